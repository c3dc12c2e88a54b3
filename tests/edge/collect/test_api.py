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
from tests.helpers import garage, jpeg

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


def test_a_burst_keeps_one_new_frame_per_interval_reported_line_by_line(served):
    url, labelling, _, frames = served
    origin = Origin("MJPEG http://127.0.0.1:1/x", (0, 0, 320, 240), "pi-test")
    stop = threading.Event()

    def camera() -> None:
        index = 0
        while not stop.is_set():
            frames.publish(LiveFrame(garage("closed", index), 1764061300.0 + index, index, origin, None))
            index += 1
            stop.wait(0.02)

    thread = threading.Thread(target=camera, name="fake-camera-feed")
    thread.start()
    try:
        status, kind, body = call(url + "/api/dataset/capture", {"label": "closed", "count": 5, "interval_s": 0.05})
    finally:
        stop.set()
        thread.join()
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert status == 200 and kind == "application/x-ndjson"
    assert [line.get("number") for line in lines[:5]] == [1, 2, 3, 4, 5]
    assert lines[-1] == {"done": True, "label": "closed", "kept": 5, "new": 5}
    assert len(labelling.dataset.images("closed")) == 5 and labelling.undo_depth == 0  # a burst is no undo step
    entries = [e for e in labelling.dataset.provenance() if e["action"] == "label"]
    assert {e["reason"] for e in entries} == {"burst"} and len({e["frame"] for e in entries}) == 5


def test_capture_now_takes_the_latest_frame_with_its_suggestion(served):
    url, labelling, _, frames = served
    suggestion = Suggestion((("open", 0.7), ("closed", 0.3)), "garage 1")
    frames.publish(LiveFrame(garage("open", 50), 1764061400.0, 50, Origin("camera 0"), suggestion))
    status, _, body = call(url + "/api/dataset/capture", {"label": "open"})
    assert status == 200 and json.loads(body.splitlines()[-1])["new"] == 1
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
