"""The teach loop closed, as a user with a fresh Pi runs it: a camera shows a driveway (gate closed, open and
empty, a car parked), the daemon has no model and collects; bursts label each scene; `make retrain` pulls
them, fits from the ImageNet backbone in a seeded Keras cache, quantizes, compares with what is live
(nothing) and deploys to the local layout; the reloaded daemon names every scene. A second `make retrain`,
with a backbone that sees only red (blind to the blue car), makes a worse bundle: compare refuses it and the
live bundle stays."""

import json
import os
import signal
import subprocess
import urllib.request

import cv2
import numpy as np
import pytest

from tests.helpers import (
    BACKBONE_SIZE,
    BACKBONE_WIDTH,
    BIN,
    DRIVEWAY_STATES,
    NO_NETWORK,
    ROOT,
    colour_backbone,
    driveway,
    free_port,
    jpeg,
    run_cli,
    start_daemon,
    wait_for,
    write_legacy_backbone,
)

pytestmark = [pytest.mark.slow, pytest.mark.system]

BURST = 30  # frames per scene: about 4 of each in the test split
TRANSFER = f"--model mobilenetv2 --size {BACKBONE_SIZE} --width {BACKBONE_WIDTH}"


def get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def seen(url: str) -> str:
    """The scene of the daemon's latest frame, from its colours: the gate is bright, the car blue."""
    try:
        with urllib.request.urlopen(url + "/snapshot.jpg", timeout=10) as response:
            image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR).astype(float)
    except OSError:
        return ""
    h, w = image.shape[:2]
    centre = image[h * 2 // 5 : h * 4 // 5, w * 2 // 5 : w * 3 // 5].mean(axis=(0, 1))
    return "closed" if centre.mean() > 150 else "parked" if centre[0] > centre[2] + 80 else "empty"


def last_labels(results, count: int = 3) -> list[str]:
    lines = results.read_text().splitlines() if results.exists() else []
    return [json.loads(line)["label"] for line in lines[-count:]]


def test_retrain_from_a_fresh_pi_deploys_then_refuses_a_worse_model(tmp_path, mjpeg_server, keras_home):
    frames = {s: [jpeg(driveway(s, 100 * i + n)) for n in range(BURST + 10)] for i, s in enumerate(DRIVEWAY_STATES)}
    camera = mjpeg_server(frames["closed"], fps=25)
    state = tmp_path / "state"
    (state / "bundles").mkdir(parents=True)  # what `make install` leaves on a Pi
    port, url = free_port(), None
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{camera.url}"\ntimeout_s = 2\n'
        f'[model]\npath = "{state / "bundles" / "current"}"\nthreads = 1\n'
        f'[collect]\nstate_dir = "{state}"\ninterval_s = 5\n'
        f'[output]\njsonl = "{tmp_path / "results.jsonl"}"\n[http]\nport = {port}\n'
    )
    daemon = start_daemon(config)
    url = f"http://127.0.0.1:{port}"
    workstation = tmp_path / "workstation" / "driveway"
    device = {
        "STATE": str(state),
        "RELOAD": f"kill -HUP {daemon.pid}",
        "WAIT_SECONDS": "120",
        "KERAS_HOME": str(keras_home),
        **NO_NETWORK,
    }

    def retrain(name: str, flags: str, quant_flags: str = "--max-drop 1.0") -> subprocess.CompletedProcess:
        make = [
            "make", "--no-print-directory", "retrain", "HOST=local", f"DATA={workstation}",
            f"RUN={tmp_path / 'runs' / name}", f"BUNDLE={tmp_path / 'bundles' / name}",
            f"REMOTE_EDGESIGHT={BIN / 'edgesight'}", f"REMOTE_CONFIG={config}",
            f"RETRAIN_FLAGS={flags}", f"QUANT_FLAGS={quant_flags}", "MARGIN=2",
        ]  # fmt: skip
        return subprocess.run(make, cwd=ROOT, env=os.environ | device, capture_output=True, text=True, timeout=1200)

    try:
        wait_for(lambda: get(url + "/api/status").get("collect", {}).get("collecting"), timeout=60,
                 what="the daemon collecting without a model")  # fmt: skip
        for scene in DRIVEWAY_STATES:  # a person holds the record button in front of each scene
            camera.frames = frames[scene]
            wait_for(lambda scene=scene: seen(url) == scene, what=f"the {scene} driveway live")
            burst = run_cli("edgesight", "collect", "--config", str(config), "--label", scene,
                            "--count", str(BURST), "--interval", "0.05")  # fmt: skip
            assert burst.returncode == 0, burst.stderr

        first = retrain("first", f"{TRANSFER} --weights imagenet")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        pulled = {d.name: len(list(d.glob("*.jpg"))) for d in workstation.iterdir() if d.is_dir()}
        assert set(pulled) == set(DRIVEWAY_STATES) and min(pulled.values()) >= BURST // 2, pulled
        assert "no bundle is live on local yet" in first.stderr
        comparison = json.loads((tmp_path / "runs" / "first" / "compare.json").read_text())
        assert comparison["decision"].startswith("deploy: nothing is live yet") and comparison["new"]["accuracy"] == 1.0
        transfer = json.loads((tmp_path / "runs" / "first" / "metrics.json").read_text())["transfer"]
        assert not transfer["features_cached"]
        version = json.loads((tmp_path / "bundles" / "first" / "manifest.json").read_text())["version"]
        assert f"deploy: {version} is live on local" in first.stderr
        report = (tmp_path / "runs" / "first" / "report" / "report.md").read_text()
        assert "## Training time" in report and "## Against the live bundle" in report

        for scene in DRIVEWAY_STATES:  # the reloaded daemon names every scene
            camera.frames = frames[scene]
            wait_for(lambda scene=scene: last_labels(tmp_path / "results.jsonl") == [scene] * 3, timeout=60,
                     what=f"the daemon to name the {scene} driveway")  # fmt: skip

        # A backbone blind to blue: it cannot tell the car from the empty drive. The int8 gate is opened
        # wide so that what refuses the bundle is the comparison with the live one.
        red_only = write_legacy_backbone(
            colour_backbone(BACKBONE_WIDTH, BACKBONE_SIZE, channels=(0,)), tmp_path / "red-only.h5"
        )
        second = retrain("second", f"{TRANSFER} --weights {red_only} --no-balance", "--max-drop 100")
        assert second.returncode != 0
        assert "retrain: not deployed" in second.stderr, second.stdout[-3000:] + second.stderr[-3000:]
        comparison = json.loads((tmp_path / "runs" / "second" / "compare.json").read_text())
        assert comparison["passed"] is False and comparison["current"]["version"] == version
        assert comparison["new"]["accuracy"] < comparison["current"]["accuracy"] == 1.0
        assert (
            "Decision: keep the current bundle" in (tmp_path / "runs" / "second" / "report" / "report.md").read_text()
        )
        assert (state / "bundles" / "current").readlink().name == version
        assert get(url + "/api/status")["model"]["version"] == version
        camera.frames = frames["parked"]
        wait_for(lambda: last_labels(tmp_path / "results.jsonl") == ["parked"] * 3, what="the live bundle still right")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, errors[-3000:]
    assert "Traceback" not in errors
