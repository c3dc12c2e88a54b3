"""`edgesight run` as systemd runs it: a real process, a notification socket, HTTP, signals, reloads."""

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.helpers import (
    ROOT,
    bundle_copy,
    digit_jpegs,
    free_port,
    get_json,
    start_daemon,
    status_or_none,
    switch,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_ready_only_after_the_first_result_then_watchdog_status_and_stopping(daemon):
    wait_for(lambda: "READY=1" in daemon.notify.fields(), timeout=60, what="READY=1")
    fields = daemon.notify.fields()
    assert fields.index("STATUS=loading the model") < fields.index("READY=1")
    assert any(f.startswith("STATUS=waiting for the first frame") for f in fields[: fields.index("READY=1")])
    # READY means a result exists: the model is loaded, checked, and a frame went through it.
    wait_for(lambda: daemon.results.exists() and daemon.results.read_text().strip(), what="the first JSON line")
    assert json.loads(daemon.results.read_text().splitlines()[0])["label"] == "4"
    wait_for(lambda: daemon.notify.fields().count("WATCHDOG=1") >= 3, what="watchdog pings while classifying")
    ready_status = next(f for f in daemon.notify.fields() if f.startswith("STATUS=") and "fps" in f)
    assert "digits 1.0.0" in ready_status
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.stderr.read()
    assert daemon.notify.fields()[-1] == "STOPPING=1"


def test_sighup_refuses_a_corrupt_bundle_and_switches_to_a_good_one(daemon, digits_bundle):
    status = wait_for(lambda: status_or_none(daemon.url + "/api/status"), timeout=60, what="the HTTP status")
    wait_for(lambda: get_json(daemon.url + "/api/status")["counters"]["frames"] > 0, what="frames")
    assert status["model"]["version"] == "1.0.0"

    # A flatbuffer of garbage whose sha256 matches its manifest: only loading it can tell.
    bundle_copy(digits_bundle, daemon.bundles / "2.0.0-corrupt", "2.0.0-corrupt", corrupt=True)
    switch(daemon.bundles, "2.0.0-corrupt")
    daemon.send_signal(signal.SIGHUP)
    refused = wait_for(
        lambda: (get_json(daemon.url + "/api/status").get("reload") or {}).get("ok") is False,
        what="the reload to be refused",
    )
    assert refused
    document = get_json(daemon.url + "/api/status")
    assert "2.0.0-corrupt" in document["reload"]["message"] and document["model"]["version"] == "1.0.0"
    frames = document["counters"]["frames"]
    wait_for(lambda: get_json(daemon.url + "/api/status")["counters"]["frames"] > frames + 10, what="more frames")
    assert get_json(daemon.url + "/api/result")["label"] == "4"  # the old model goes on classifying
    metrics = urllib.request.urlopen(daemon.url + "/metrics", timeout=5).read().decode()
    assert "edgesight_reload_failures_total 1.0" in metrics

    bundle_copy(digits_bundle, daemon.bundles / "3.0.0", "3.0.0")
    switch(daemon.bundles, "3.0.0")
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: get_json(daemon.url + "/api/status")["model"]["version"] == "3.0.0", what="the new model")
    document = get_json(daemon.url + "/api/status")
    assert document["reload"]["ok"] is True and document["health"]["ok"] is True
    assert "READY=1" in daemon.notify.fields()[daemon.notify.fields().index("RELOADING=1") :]
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert "reload refused" in daemon.stderr.read()


def http_status(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_healthz_turns_503_when_the_stream_dies_and_200_when_it_is_back(
    tmp_path, digits_bundle, digits_dir, mjpeg_server
):
    server = mjpeg_server(digit_jpegs(digits_dir, "7"), fps=20)
    port = free_port()
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{server.url}"\ntimeout_s = 1.0\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n'
        f'[model]\npath = "{digits_bundle}"\nthreads = 1\n[output]\njsonl = ""\n[http]\nport = {port}\n'
    )
    process = start_daemon(config)
    healthz = f"http://127.0.0.1:{port}/healthz"
    try:
        wait_for(lambda: _ok(healthz) and http_status(healthz)[0] == 200, timeout=60, what="healthy")
        server.stop()
        code, body = wait_for(lambda: _unhealthy(healthz), what="/healthz to turn 503")
        assert code == 503 and "source" in json.dumps(body)
        server.start()
        wait_for(lambda: http_status(healthz)[0] == 200, what="healthy again after the stream is back")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait(30)


def _ok(url: str) -> bool:
    try:
        http_status(url)
        return True
    except OSError:
        return False


def _unhealthy(url: str) -> tuple[int, dict] | None:
    code, body = http_status(url)
    return (code, body) if code == 503 else None


def test_run_piped_into_head_stops_when_head_exits(tmp_path, digits_bundle, digits_dir):
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "{digits_dir / "2"}"\nloop = true\n[model]\npath = "{digits_bundle}"\n')
    result = subprocess.run(
        f"{sys.executable} -m edge.cli run --config {config} | head -n 3",
        shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["2", "2", "2"]
    assert "stdout was closed by its reader; stopping" in result.stderr and "Traceback" not in result.stderr


def after_last_reload(fields: list[str]) -> list[str]:
    return fields[len(fields) - fields[::-1].index("RELOADING=1") :]


def reload_with_source(daemon, uri: str) -> dict:
    """Point the daemon's config at another source, send SIGHUP, and return /api/status once it answered."""
    config = daemon.config.read_text()
    daemon.config.write_text(re.sub(r"(?m)^uri = .*$", f'uri = "{uri}"\ntimeout_s = 1.0', config, count=1))
    reloads = daemon.notify.fields().count("RELOADING=1")
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.notify.fields().count("RELOADING=1") > reloads, what="the reload to start")
    wait_for(lambda: "READY=1" in after_last_reload(daemon.notify.fields()), what="the reload's answer")
    daemon.config.write_text(config)
    return get_json(daemon.url + "/api/status")


def test_a_reload_onto_a_missing_file_or_a_silent_stream_is_refused_and_the_old_source_goes_on(
    daemon, tmp_path, digits_dir
):
    """Refused like a bad bundle: counted, shown in /api/status, and the old source and model keep classifying
    (the process does not end: an exit 0 would keep systemd's Restart=on-failure from starting it again)."""
    wait_for(lambda: (status_or_none(daemon.url + "/api/status") or {}).get("counters", {}).get("frames"), 60)
    silent = f"http://127.0.0.1:{free_port()}/stream.mjpg"  # nothing listens there
    for uri, reason in ((str(tmp_path / "absent.mp4"), "absent.mp4"), (silent, "cannot be opened")):
        document = reload_with_source(daemon, uri)
        assert document["reload"]["ok"] is False and reason in document["reload"]["message"], document["reload"]
        frames = document["counters"]["frames"]
        wait_for(lambda: get_json(daemon.url + "/api/status")["counters"]["frames"] > frames + 10, what="frames")  # noqa: B023
        assert get_json(daemon.url + "/api/result")["label"] == "4"  # the old folder, through the old model
        assert daemon.poll() is None
    metrics = urllib.request.urlopen(daemon.url + "/metrics", timeout=5).read().decode()
    assert "edgesight_reload_failures_total 2.0" in metrics
    document = reload_with_source(daemon, str(digits_dir / "7"))  # a source that works is swapped in
    assert document["reload"]["ok"] is True
    wait_for(lambda: get_json(daemon.url + "/api/result")["label"] == "7", what="results from the new source")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
