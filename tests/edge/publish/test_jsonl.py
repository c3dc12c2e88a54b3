"""JSON lines to a stream or to a file rotated by size; a failing file is counted, never raised."""

import array
import fcntl
import io
import json
import os
import select
import signal
import subprocess
import sys
import termios

import pytest

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.jsonl import JsonlSink
from edge.publish.settings import OutputSettings
from edge.result import Result
from tests.helpers import DEADLINE_S, ROOT, wait_for


def record(n: int) -> Result:
    label = str(n % 10)
    return Result(1764061200.0 + n, n, label, 0.5, ((label, 0.5),), latency_ms=1.0, frame_age_ms=2.0)


def test_stdout_gets_one_compact_line_per_record_in_order():
    stream = io.StringIO()
    sink = JsonlSink(OutputSettings(jsonl="-"), stream=stream)
    sink.start()
    for n in range(20):
        sink.submit(record(n))
    sink.close(timeout=5)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [record(n).to_json() for n in range(20)]
    assert " " not in lines[0]


def test_file_rotates_by_size_and_keeps_the_newest_files(tmp_path):
    path = tmp_path / "results.jsonl"
    line_bytes = len(record(10).encoded) + 1
    sink = JsonlSink(OutputSettings(jsonl=str(path), rotate_bytes=10 * line_bytes, keep=2))
    sink.start()
    for n in range(10, 60):
        sink.submit(record(n))
    sink.close(timeout=5)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["results.jsonl", "results.jsonl.1", "results.jsonl.2"]
    assert all(f.stat().st_size <= 10 * line_bytes for f in files)
    frames = [json.loads(line)["frame"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert frames == list(range(30, 60))  # the 50 records filled 5 files; the 2 oldest were rotated away
    assert sink.counters().delivered == 50


def test_an_unwritable_file_counts_failures_and_never_raises(tmp_path):
    sink = JsonlSink(OutputSettings(jsonl=str(tmp_path / "absent" / "results.jsonl")))
    sink.start()
    for n in range(5):
        sink.submit(record(n))
    sink.close(timeout=5)
    counters = sink.counters()
    assert counters.failed == 5 and counters.delivered == 0


def test_bad_settings_are_config_errors_naming_the_key():
    with pytest.raises(EdgesightError) as error:
        JsonlSink(OutputSettings(jsonl="x.jsonl", keep=0))
    assert error.value.exit_code == EXIT_CONFIG and str(error.value).startswith("[output] keep must be at least 1")


def test_a_long_line_cut_short_by_a_signal_still_arrives_whole():
    """systemd runs the daemon with PYTHONUNBUFFERED=1: stdout is a text layer over an unbuffered pipe, which
    drops what a write interrupted by a signal leaves once the pipe is full (a reader slower than the daemon)."""
    read_end, write_end = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True)  # what `python -u` makes of stdout
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    sink = JsonlSink(OutputSettings(jsonl="-"), stream=stream)
    try:
        sink.start()
        long = Result(1764061200.0, 0, "x" * 300_000, 0.5, (("x" * 300_000, 0.5),), latency_ms=1.0, frame_age_ms=2.0)
        sink.submit(long)
        sink.submit(record(1))
        capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        wait_for(lambda: queued(read_end) >= capacity, what="the pipe to fill up")  # the sink blocks in write()
        assert sink._thread is not None and sink._thread.ident is not None
        signal.pthread_kill(sink._thread.ident, signal.SIGUSR1)  # interrupts it after a partial write
        received = b""
        while received.count(b"\n") < 2:
            assert select.select([read_end], [], [], DEADLINE_S)[0], "the sink stopped writing"
            received += os.read(read_end, 1 << 20)
        sink.close(timeout=5)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        stream.close()
        os.close(read_end)
    assert [json.loads(line) for line in received.splitlines()] == [long.to_json(), record(1).to_json()]


def queued(read_end: int) -> int:
    """The bytes waiting in a pipe."""
    count = array.array("i", [0])
    fcntl.ioctl(read_end, termios.FIONREAD, count)
    return count[0]


FULL_DISK = """
import json, resource, signal, sys, time
from edge.publish.jsonl import JsonlSink
from edge.publish.settings import OutputSettings
from edge.result import Result

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
record = lambda n: Result(1764061200.0 + n, n, str(n), 0.5, ((str(n), 0.5),), latency_ms=1.0, frame_age_ms=2.0)
sink = JsonlSink(OutputSettings(jsonl=sys.argv[1]))
sink.start()
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(3.5 * (len(record(0).encoded) + 1)), hard))  # the disk fills up
for n in range(5):
    sink.submit(record(n))
deadline = time.monotonic() + 20
while sink.counters().delivered + sink.counters().failed < 5:  # polled with a deadline
    assert time.monotonic() < deadline, sink.counters()
    time.sleep(0.01)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is freed
sink.submit(record(5))
sink.close(timeout=5)
print(json.dumps(sink.counters().to_json()))
"""


def test_a_full_disk_leaves_only_whole_lines_in_the_file(tmp_path):
    path = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    counters = json.loads(done.stdout)
    assert counters["failed"] == 2 and counters["delivered"] == 4
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [0, 1, 2, 5]


def test_a_fast_burst_is_written_in_batches_complete_and_in_order(tmp_path):
    """Results submitted faster than lines are flushed: every one arrives, in order, counted as delivered."""
    path = tmp_path / "results.jsonl"
    sink = JsonlSink(OutputSettings(jsonl=str(path)))
    sink.start()
    for n in range(500):
        sink.submit(record(n))
    sink.close(timeout=5)
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == list(range(500))
    assert sink.counters().delivered == 500
