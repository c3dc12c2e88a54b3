"""The libraries' own log lines (TensorFlow, LiteRT, OpenCV, FFmpeg) stay out of stderr unless
--log-level debug: checked on real commands, in real subprocesses."""

import os
import re
import threading

import pytest

from edge import library_logs
from tests.helpers import free_port, run_cli, start_daemon, wait_for

# Everything our commands write to stderr: log records and the one-line error.
OURS = re.compile(r"^(\d{4}-\d\d-\d\d [\d:,]+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: |[\w.-]+: error: )")


def foreign(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not OURS.match(line)]


def test_native_lines_are_held_back_filtered_and_the_rest_written_after(capfd, monkeypatch):
    monkeypatch.setattr(library_logs, "_quiet", True)
    with library_logs.native_stderr_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"I0000 00:00:1796133265.534678     699 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"a real error from native code\n")
        assert capfd.readouterr().err == ""  # held back while the block runs
    assert capfd.readouterr().err == "a real error from native code\n"


@pytest.mark.slow
@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_tensorflow_command_prints_only_its_own_lines_unless_debugging(tmp_path, level):
    # quantize imports TensorFlow before it finds that the folder is no run.
    result = run_cli("edgesight-train", "quantize", str(tmp_path), "--out", str(tmp_path / "b"), "--log-level", level)
    assert result.returncode == 66 and "not a finished run" in result.stderr, result.stderr
    if level == "info":
        assert foreign(result.stderr) == []
    else:
        assert any(library_logs.NOISE.match(line) for line in foreign(result.stderr)), result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_daemon_retrying_a_dead_stream_prints_only_its_own_lines_unless_debugging(digits_bundle, tmp_path, level):
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "rtsp://127.0.0.1:{free_port()}/camera"\ntimeout_s = 1\n'
        "reconnect_min_s = 0.05\nreconnect_max_s = 0.2\n"
        f'[model]\npath = "{digits_bundle}"\nthreads = 1\n[output]\njsonl = ""\n[http]\nport = {free_port()}\n'
    )
    process = start_daemon(config, "--log-level", level)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), name="stderr", daemon=True)
    reader.start()
    try:
        wait_for(lambda: sum("retrying in" in line for line in lines) >= 3, timeout=60, what="three retries")
    finally:
        process.terminate()
        process.wait(30)
        reader.join(10)
    stderr = "".join(lines)
    if level == "info":
        assert foreign(stderr) == []
    else:
        assert any(line.startswith("[tcp @") for line in foreign(stderr)), stderr  # FFmpeg's, per attempt
        assert "Created TensorFlow Lite XNNPACK delegate" in stderr
