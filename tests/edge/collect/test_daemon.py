"""The daemon without a model: a fresh Pi collects before its first bundle, is healthy and READY while
frames flow, and starts classifying (the data loop's suggestions in the inbox) when a bundle is deployed
and it is reloaded; bursts without a daemon open the source themselves."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from urllib.error import HTTPError

import cv2
import numpy as np
import pytest

from tests.helpers import assert_one_line_error, bundle_copy, free_port, run_cli, start_daemon, switch, wait_for
from tests.parts import NotifySocket

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


def test_a_fresh_pi_collects_until_its_first_bundle_is_deployed_and_reloaded(tmp_path, digits_bundle, digits_dir):
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    port = free_port()
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{digits_dir / "4"}"\nloop = true\nmax_fps = 20\n'
        f'[model]\npath = "{bundles / "current"}"\nthreads = 1\n'
        '[collect]\nstate_dir = "state"\ninterval_s = 0.2\nmin_interval_s = 0\nduplicate = 0\n'
        "[dataloop]\nbelow = 1.0\nmin_interval_s = 0\n"
        f'[output]\njsonl = "{tmp_path / "results.jsonl"}"\n[http]\nport = {port}\n'
    )
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "3000000"}
    daemon = start_daemon(config, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "READY=1" in notify.fields(), timeout=60, what="READY while collecting")
        assert any(f.startswith("STATUS=collecting without a model") for f in notify.fields())
        wait_for(lambda: "WATCHDOG=1" in notify.fields(), what="the watchdog fed by frames")
        wait_for(lambda: get(url + "/healthz")[0] == 200, what="healthy while collecting")
        status = get(url + "/api/status")[1]
        assert status["model"] is None and status["collect"]["collecting"] is True
        wait_for(lambda: get(url + "/api/dataset")[1].get("inbox", {}).get("count", 0) >= 2, what="frames kept")
        assert all(item["suggestion"] == [] for item in get(url + "/api/dataset/inbox")[1]["items"])
        png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
        request = urllib.request.Request(url + "/api/classify", data=png, headers={"Content-Type": "image/png"})
        with pytest.raises(HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503

        bundle_copy(digits_bundle, bundles / "1.0.0", "1.0.0")  # what `make deploy` does
        switch(bundles, "1.0.0")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: (get(url + "/api/status")[1].get("model") or {}).get("version") == "1.0.0",
                 timeout=120, what="the deployed bundle live")  # fmt: skip
        wait_for(lambda: (tmp_path / "results.jsonl").exists() and (tmp_path / "results.jsonl").read_text(),
                 what="results")  # fmt: skip
        assert json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])["label"] == "4"

        def suggested() -> list:
            return [i for i in get(url + "/api/dataset/inbox")[1]["items"] if i["suggestion"]]

        wait_for(suggested, what="frames kept with the model's suggestion")
        assert suggested()[0]["suggested"] == "4"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, errors[-3000:]
    assert "does not exist yet: collecting frames for labelling only" in errors and "Traceback" not in errors


def test_check_says_a_config_without_a_model_collects(tmp_path, digits_dir):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "{digits_dir / "1"}"\n')
    result = run_cli("edgesight", "check", "--config", str(config))
    assert result.returncode == 0 and "ok: no model, collecting for labelling" in result.stdout


def test_a_burst_without_a_daemon_opens_the_source_itself(tmp_path, digits_dir):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "{digits_dir / "7"}"\nloop = true\n[collect]\nstate_dir = "state"\n')
    result = run_cli("edgesight", "collect", "--config", str(config), "--label", "seven", "--count", "5",
                     "--interval", "0.05")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["number"] for line in lines] == [1, 2, 3, 4, 5] and {line["label"] for line in lines} == {"seven"}
    assert "seven: 5 of 5 frame(s) kept" in result.stderr
    stored = sorted(p.stem for p in (tmp_path / "state" / "dataset" / "seven").glob("*.jpg"))
    assert stored == sorted(line["sha256"] for line in lines if line["new"])


def test_a_burst_from_a_source_that_ends_says_how_far_it_got(tmp_path, digits_dir):
    folder = tmp_path / "three"
    folder.mkdir()
    for path in sorted((digits_dir / "2").iterdir())[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "{folder}"\n[collect]\nstate_dir = "state"\n')
    result = run_cli("edgesight", "collect", "--config", str(config), "--label", "two", "--count", "5",
                     "--interval", "0.01")  # fmt: skip
    assert_one_line_error(result, 69, "stopped delivering frames after 3 of 5")
    assert len(list((tmp_path / "state" / "dataset" / "two").glob("*.jpg"))) == 3


def test_a_burst_into_a_reserved_name_is_a_usage_error(tmp_path):
    config = tmp_path / "edgesight.toml"
    config.write_text('[source]\nuri = "0"\n')
    result = run_cli("edgesight", "collect", "--config", str(config), "--label", "train")
    assert_one_line_error(result, 64, "--label", "reserved")


def test_ctrl_c_on_a_burst_through_the_daemon_stops_it_there(tmp_path, digits_dir):
    port = free_port()
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{digits_dir / "7"}"\nloop = true\nmax_fps = 20\n'
        f'[collect]\nstate_dir = "state"\ninterval_s = 3600\n[output]\njsonl = ""\n[http]\nport = {port}\n'
    )
    url = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "collect", "--config", str(config)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: get(url + "/api/dataset")[1].get("live"), timeout=60, what="the daemon's live frames")
        burst = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "collect", "--config", str(config), "--label", "seven",
             "--count", "1000", "--interval", "0.2"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        try:
            first = json.loads(burst.stdout.readline())  # the daemon kept a frame: the burst runs there
            assert (first["label"], first["number"]) == ("seven", 1)
            assert get(url + "/api/dataset")[1]["burst"] is not None
            burst.send_signal(signal.SIGINT)
            out, err = burst.communicate(timeout=30)
        finally:
            burst.kill()
        assert burst.returncode == 0 and "seven: stopped after" in err.decode(), err.decode()
        reported = [first, *(json.loads(line) for line in out.decode().splitlines())]
        wait_for(lambda: get(url + "/api/dataset")[1]["burst"] is None, what="the burst stopped on the daemon")
        stored = sorted(p.stem for p in (tmp_path / "state" / "dataset" / "seven").glob("*.jpg"))
        assert len(stored) < 1000 and set(stored) >= {line["sha256"] for line in reported if line["new"]}
    finally:
        daemon.terminate()
        _, errors = daemon.communicate(timeout=30)
    assert daemon.returncode == 0 and "Traceback" not in errors
