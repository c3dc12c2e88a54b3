"""The teach loop end to end, as a user with a fresh Pi runs it: no model; a video played by an MJPEG
camera shows the garage door closed, then open; the daemon collects (near-copies skipped), bursts go
straight into classes, a person labels in headless Chromium (a click, a key, an undo, a new class),
`make pull-data` brings the dataset to the workstation twice (the second time adds nothing), and
`edgesight-train fit` accepts the folder."""

import json
import signal
import subprocess
import urllib.request

import cv2
import numpy as np
import pytest

from tests.helpers import BIN, ROOT, free_port, run_cli, two_scene_video, wait_for
from tests.parts import Browser

pytestmark = [pytest.mark.slow, pytest.mark.system]

TOKEN = "teach-token"
ROI = [40, 0, 240, 240]  # x, y, width, height: the door and a little wall


def api(url: str, path: str) -> dict | None:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except OSError:
        return None


def live_door(url: str) -> str | None:
    """What the daemon sees now: the door region of its latest frame is bright when closed."""
    request = urllib.request.Request(url + "/snapshot.jpg", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_GRAYSCALE)
    except OSError:
        return None
    height, width = image.shape
    door = image[height // 3 : height * 3 // 5, width * 3 // 10 : width * 7 // 10]
    return "closed" if door.mean() > 120 else "open"


def images(folder) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.jpg"))) for d in sorted(folder.iterdir()) if d.is_dir()}


def test_from_a_camera_without_a_model_to_a_dataset_that_training_accepts(tmp_path, mjpeg_server):
    scenes = two_scene_video(tmp_path / "garage.mp4")
    # The frames the collector sees and the ones bursts keep are distinct: a looping camera would otherwise
    # hand a burst the very frame in the inbox, which the dataset stores once.
    collected = {name: frames[:20] for name, frames in scenes.items()}
    bursts = {name: frames[20:] for name, frames in scenes.items()}
    camera = mjpeg_server(collected["closed"], fps=15)
    port = free_port()
    (tmp_path / "http_token").write_text(TOKEN + "\n")
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{camera.url}"\ntimeout_s = 2\nroi = {ROI}\n'
        '[collect]\nstate_dir = "state"\ninterval_s = 0.3\nmin_interval_s = 0.2\n'
        f'[http]\nport = {port}\ntoken_file = "http_token"\n[output]\njsonl = ""\n'
    )
    dataset = tmp_path / "state" / "dataset"
    workstation = tmp_path / "workstation" / "garage"
    url = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen(
        [str(BIN / "edgesight"), "collect", "--config", str(config)], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        # The closed door, interval after interval: only the first frame is kept, the rest are near-copies.
        wait_for(lambda: ((api(url, "/api/dataset") or {}).get("collector") or {}).get("near_copies", 0) >= 5,
                 timeout=60, what="intervals of the same scene")  # fmt: skip
        assert api(url, "/api/dataset")["inbox"]["count"] == 1
        camera.frames = collected["open"]
        wait_for(lambda: api(url, "/api/dataset")["inbox"]["count"] == 2, what="the open door to be kept")
        kept = api(url, "/api/dataset/inbox")["items"]
        assert sorted(item["reason"] for item in kept) == ["change", "interval"]
        assert all(item["suggestion"] == [] for item in kept)  # no model, no suggestion

        # Bursts straight into classes, through the daemon: it holds the camera.
        camera.frames = bursts["open"]
        wait_for(lambda: live_door(url) == "open", what="the open door live")
        burst = run_cli("edgesight", "collect", "--config", str(config), "--label", "open", "--count", "6",
                        "--interval", "0.1")  # fmt: skip
        assert burst.returncode == 0, burst.stderr
        assert [json.loads(line)["number"] for line in burst.stdout.splitlines()] == [1, 2, 3, 4, 5, 6]
        camera.frames = bursts["closed"]
        wait_for(lambda: live_door(url) == "closed", what="the closed door live")
        burst = run_cli("edgesight", "collect", "--config", str(config), "--label", "closed", "--count", "6",
                        "--interval", "0.1")  # fmt: skip
        assert burst.returncode == 0, burst.stderr
        assert images(dataset) == {"closed": 6, "open": 6}

        # A person labels the inbox in the browser.
        browser = Browser(tmp_path / "profile")
        try:
            browser.open(url + "/label")
            browser.wait_until("document.getElementById('login').classList.contains('shown')", "the token form")
            browser.click("#token")
            browser.type(TOKEN)
            browser.press("Enter")
            browser.wait_until("document.querySelectorAll('.tile img[src^=\"blob:\"]').length === 2", "the inbox")
            browser.click(".tile .choice")  # the oldest frame, the closed door, into the first class: closed
            browser.wait_until("document.querySelectorAll('.tile').length === 1", "the click to label")
            browser.click("#new-class-name")
            browser.type("half open")
            browser.press("Enter")
            browser.wait_until("document.querySelectorAll('#classes li').length === 3", "the new class")
            browser.click("main")
            browser.press("2")  # closed, half open, open
            browser.wait_until("document.querySelectorAll('.tile').length === 0", "the key to label")
            assert images(dataset) == {"closed": 7, "half open": 1, "open": 6}
            browser.press("u")
            browser.wait_until("document.querySelectorAll('.tile').length === 1", "the undo")
            browser.press("3")
            browser.wait_until("document.querySelectorAll('.tile').length === 0", "the key to label")
            browser.screenshot(tmp_path / "label.png")
        finally:
            browser.close()
        assert images(dataset) == {"closed": 7, "half open": 0, "open": 7}
        assert cv2.imread(str(tmp_path / "label.png")).std() > 10  # a rendered page

        # The workstation pulls, twice.
        make = ["make", "--no-print-directory", "pull-data", "HOST=local", f"DATA={workstation}",
                f"REMOTE_EDGESIGHT={BIN / 'edgesight'}", f"REMOTE_CONFIG={config}"]  # fmt: skip
        first = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "14 new image(s)" in first.stderr and images(workstation) == {"closed": 7, "open": 7}
        pulled = {p.relative_to(workstation): p.read_bytes() for p in workstation.rglob("*") if p.is_file()}
        again = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "0 new image(s)" in again.stderr, again.stderr
        assert {p.relative_to(workstation): p.read_bytes() for p in workstation.rglob("*") if p.is_file()} == pulled
        entries = [json.loads(line) for line in (workstation / "provenance.jsonl").read_text().splitlines()]
        assert len(entries) == 14 and {e["reason"] for e in entries} == {"burst", "interval", "change"}
        assert {e["source"] for e in entries} == {f"stream {camera.url}"} and all(e["roi"] == ROI for e in entries)
        shapes = {cv2.imread(str(path)).shape for path in workstation.glob("*/*.jpg")}
        assert shapes == {(ROI[3], ROI[2], 3)}  # cropped to the roi before they were kept
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, errors[-3000:]
    assert "Traceback" not in errors

    fit = run_cli("edgesight-train", "fit", str(workstation), "--out", str(tmp_path / "run"), "--size", "32",
                  "--epochs", "1", timeout=900)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    counts = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert (tmp_path / "run" / "model.keras").is_file() and "closed" in json.dumps(counts)
