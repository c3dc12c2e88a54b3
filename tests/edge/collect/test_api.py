"""The /api/dataset endpoints on the daemon's HTTP server, on 127.0.0.1: the same token as the rest, the
inbox least confident first, label, discard, undo, classes, capture and bursts from live frames, export."""

import io
import json
import tarfile
import threading
import urllib.request
from urllib.error import HTTPError

import pytest

from edge.collect.api import DatasetApi
from edge.collect.burst import LatestFrame, LiveFrame
from edge.collect.collector import Origin, Suggestion
from edge.collect.labelling import Labelling
from edge.collect.sample import Sample
from edge.publish.http import HttpServer
from edge.publish.settings import HttpSettings
from edge.state import LiveState
from tests.helpers import garage, jpeg, wait_for

TOKEN = "s3cret-token"


def call(url: str, body=None, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, str, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def served(tmp_path, monkeypatch):
    (tmp_path / "http_token").write_text(TOKEN + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    labelling = Labelling(tmp_path / "state", 20_000_000)
    scores = [0.9, None, 0.3, 0.6]
    items = []
    for n, score in enumerate(scores):
        suggestion = (("open", score), ("closed", round(1 - score, 2))) if score is not None else ()
        sample = Sample(captured=1764061200.0 + n, reason="interval", suggestion=suggestion, device="pi-test")
        items.append(labelling.inbox.put(jpeg(garage("open", n)), sample))
    frames = LatestFrame()
    api = DatasetApi(labelling, frames, lambda: {"kept": {"interval": 4}, "duplicates": 7})
    server = HttpServer(HttpSettings(port=0), LiveState("pi-test"), dataset=api)
    server.start()
    yield server.url, labelling, items, frames
    server.close()


def test_dataset_endpoints_need_the_token_but_the_label_page_does_not(served):
    url, _, items, _ = served
    assert call(url + "/api/dataset", token=None)[0] == 401
    assert call(url + "/api/dataset/label", {"ids": [items[0].id], "label": "open"}, token="wrong")[0] == 401
    status, kind, page = call(url + "/label", token=None)
    assert status == 200 and kind.startswith("text/html") and b"capture-now" in page
    assert call(url + "/api/dataset/nothing")[0] == 404


def test_the_inbox_lists_the_least_confident_first_and_serves_its_images(served):
    url, _, items, _ = served
    status, _, body = call(url + "/api/dataset/inbox")
    listing = json.loads(body)
    assert status == 200 and listing["total"] == 4
    assert [i["id"] for i in listing["items"]] == [items[1].id, items[2].id, items[3].id, items[0].id]
    assert listing["items"][1]["suggested"] == "open" and listing["items"][1]["score"] == 0.3
    assert [i["id"] for i in json.loads(call(url + "/api/dataset/inbox?limit=1")[2])["items"]] == [items[1].id]
    status, kind, image = call(url + f"/api/dataset/inbox/{items[2].id}.jpg")
    assert status == 200 and kind == "image/jpeg" and image == jpeg(garage("open", 2))
    assert call(url + "/api/dataset/inbox/../../secret.jpg")[0] == 404


def test_label_discard_undo_and_counts(served):
    url, labelling, items, _ = served
    status, _, body = call(url + "/api/dataset/label", {"ids": [items[0].id, items[1].id], "label": "open"})
    answer = json.loads(body)
    assert status == 200 and answer["labelled"] == 2 and answer["classes"] == [{"name": "open", "count": 2}]
    assert answer["inbox"]["count"] == 2 and answer["undo"] == 1
    assert answer["collector"] == {"kept": {"interval": 4}, "duplicates": 7}
    sha = items[0].sample.sha256
    assert call(url + f"/api/dataset/images/open/{sha}.jpg")[2] == labelling.dataset.read("open", sha)
    assert json.loads(call(url + "/api/dataset/discard", {"ids": [items[2].id]})[2])["discarded"] == 1
    assert json.loads(call(url + "/api/dataset/undo", {})[2])["undone"] == {
        "kind": "discard", "count": 1, "ids": [items[2].id],
    }  # fmt: skip
    undone = json.loads(call(url + "/api/dataset/undo", {})[2])
    assert undone["undone"]["kind"] == "label" and undone["inbox"]["count"] == 4
    assert call(url + "/api/dataset/undo", {})[0] == 409


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("label", {"ids": ["x"], "label": "open"}, "list of ids"),
        ("label", {"ids": [], "label": "train"}, "reserved"),
        ("label", {"ids": []}, '"label"'),
        ("classes", {"name": "../up"}, "not a class name"),
        ("capture", {"label": "open", "count": 0}, "count"),
        ("rename", {"from": "absent", "to": "x"}, "no class"),
    ],
)
def test_bad_requests_name_what_is_wrong(served, path, body, fragment):
    url, labelling, _, _ = served
    status, _, answer = call(url + f"/api/dataset/{path}", body)
    assert status in (400, 404) and fragment in json.loads(answer)["error"]
    assert call(url + "/api/dataset/label", raw=b"{not json")[0] == 400
    assert len(labelling.inbox) == 4


def test_classes_are_created_and_renamed(served):
    url, _, _, _ = served
    assert call(url + "/api/dataset/classes", {"name": "half open"})[0] == 201
    assert call(url + "/api/dataset/classes", {"name": "half open"})[0] == 200
    status, _, body = call(url + "/api/dataset/rename", {"from": "half open", "to": "ajar"})
    assert status == 200 and json.loads(body)["classes"] == [{"name": "ajar", "count": 0}]


def call_with_headers(url: str, body) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, dict(response.headers), json.loads(response.read())


def job(url: str, job_id: str, after: int = 0) -> dict:
    status, _, body = call(url + f"/api/dataset/capture/{job_id}?after={after}")
    assert status == 200
    return json.loads(body)


@pytest.fixture
def camera(served):
    """A camera feeding the live frames every 20 ms, from a thread, until the test ends."""
    _, _, _, frames = served
    origin = Origin("MJPEG http://127.0.0.1:1/x", (0, 0, 320, 240), "pi-test")
    stop = threading.Event()

    def feed() -> None:
        index = 0
        while not stop.is_set():
            frames.publish(LiveFrame(garage("closed", index), 1764061300.0 + index, index, origin, None))
            index += 1
            stop.wait(0.02)

    thread = threading.Thread(target=feed, name="fake-camera-feed")
    thread.start()
    yield
    stop.set()
    thread.join()


def test_a_burst_runs_as_a_job_that_reports_each_frame_it_keeps(served, camera):
    url, labelling, _, _ = served
    status, headers, started = call_with_headers(
        url + "/api/dataset/capture", {"label": "closed", "count": 5, "interval_s": 0.05}
    )
    assert status == 202 and headers["Location"] == f"/api/dataset/capture/{started['id']}"
    assert started["state"] == "running" and started["label"] == "closed" and started["count"] == 5
    ended = wait_for(lambda: (j := job(url, started["id"]))["done"] and j, what="the burst to end")
    assert ended["state"] == "done" and (ended["kept"], ended["new"], ended["error"]) == (5, 5, None)
    assert [f["number"] for f in ended["frames"]] == [1, 2, 3, 4, 5]
    assert [f["number"] for f in job(url, started["id"], after=3)["frames"]] == [4, 5]  # what a poller lacks
    stored = sorted(p.stem for p in (labelling.dataset.root / "closed").glob("*.jpg"))
    assert stored == sorted(f["sha256"] for f in ended["frames"])
    assert len(labelling.dataset.images("closed")) == 5 and labelling.undo_depth == 0  # a burst is no undo step
    entries = [e for e in labelling.dataset.provenance() if e["action"] == "label"]
    assert {e["reason"] for e in entries} == {"burst"} and len({e["frame"] for e in entries}) == 5


def test_a_long_burst_holds_no_request_and_can_be_stopped(served, camera):
    url, labelling, _, _ = served
    status, _, body = call(url + "/api/dataset/capture", {"label": "closed", "count": 1000, "interval_s": 60})
    assert status == 202  # answered at once, not after 1000 minutes
    running = json.loads(body)
    wait_for(lambda: job(url, running["id"])["kept"] == 1, what="the burst's first frame")
    assert json.loads(call(url + "/api/dataset")[2])["burst"] == running["id"]
    status, _, body = call(url + "/api/dataset/capture", {"label": "open"})
    assert status == 409 and running["id"] in json.loads(body)["error"]  # one burst at a time
    assert call(url + f"/api/dataset/capture/{running['id']}/stop", {})[0] == 200
    stopped = wait_for(lambda: (j := job(url, running["id"]))["done"] and j, what="the burst to stop")
    assert (stopped["state"], stopped["kept"]) == ("stopped", 1)
    assert json.loads(call(url + "/api/dataset")[2])["burst"] is None
    assert len(labelling.dataset.images("closed")) == 1
    assert call(url + "/api/dataset/capture/0123456789ab")[0] == 404


def test_a_burst_still_running_is_stopped_when_the_daemon_stops(tmp_path):
    labelling = Labelling(tmp_path / "state", 20_000_000)
    frames = LatestFrame()
    frames.publish(LiveFrame(garage("open", 1), 1764061400.0, 1, Origin("camera 0")))
    api = DatasetApi(labelling, frames)
    reply = api.handle("POST", "/api/dataset/capture", json.dumps({"label": "open", "count": 3}).encode())
    assert reply.status == 202
    running = json.loads(reply.body)
    wait_for(lambda: json.loads(api.handle("GET", f"/api/dataset/capture/{running['id']}").body)["kept"] == 1,
             what="the first frame")  # fmt: skip
    api.close(timeout=5)  # the camera sends nothing more: the burst waits for a frame until it is stopped
    ended = json.loads(api.handle("GET", f"/api/dataset/capture/{running['id']}").body)
    assert (ended["state"], ended["kept"]) == ("stopped", 1)


def test_capture_now_takes_the_latest_frame_with_its_suggestion(served):
    url, labelling, _, frames = served
    suggestion = Suggestion((("open", 0.7), ("closed", 0.3)), "garage 1")
    frames.publish(LiveFrame(garage("open", 50), 1764061400.0, 50, Origin("camera 0"), suggestion))
    status, _, body = call(url + "/api/dataset/capture", {"label": "open"})
    assert status == 202
    ended = wait_for(lambda: (j := job(url, json.loads(body)["id"]))["done"] and j, what="the capture")
    assert (ended["state"], ended["new"]) == ("done", 1)
    entry = list(labelling.dataset.provenance())[-1]
    assert entry["reason"] == "capture" and entry["suggested"] == "open" and entry["frame"] == 50
    assert labelling.undo_depth == 1


def test_export_over_http_leaves_out_what_the_caller_has(served):
    url, _, items, _ = served
    call(url + "/api/dataset/label", {"ids": [i.id for i in items], "label": "open"})
    have = [items[0].sample.sha256]
    status, kind, body = call(url + "/api/dataset/export", {"have": have})
    assert status == 200 and kind == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
    assert names[:2] == ["index.json", "provenance.jsonl"]
    assert sorted(names[2:]) == sorted(f"open/{i.sample.sha256}.jpg" for i in items[1:])
    assert call(url + "/api/dataset/export", {"have": ["nothex"]})[0] == 400
