"""JSON lines to a stream or to a file rotated by size; a failing file is counted, never raised."""

import io
import json

import pytest

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.jsonl import JsonlSink
from edge.publish.settings import OutputSettings
from edge.result import Result


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
