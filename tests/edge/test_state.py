"""The live state: what the capture thread and the loop write, every view readers take of it."""

import threading

import numpy as np
import pytest

from edge.publish.jsonl import JsonlSink
from edge.publish.settings import OutputSettings
from edge.result import Result
from edge.state import FRAME_AGE_BUCKETS, LATENCY_BUCKETS, LiveState, ModelInfo
from tests.helpers import wait_for


def result(label: str, frame: int = 0, latency_ms: float = 2.0, frame_age_ms: float = 5.0) -> Result:
    return Result(
        ts=1764061200.0 + frame,
        frame=frame,
        label=label,
        score=0.75,
        topk=((label, 0.75), ("x", 0.25)),
        latency_ms=latency_ms,
        frame_age_ms=frame_age_ms,
    )


def healthy_state() -> LiveState:
    state = LiveState()
    state.set_model(ModelInfo("m", "1"))
    state.set_source("camera")
    state.set_source_state("open")
    return state


def test_health_names_what_is_missing_and_turns_stale_when_frames_stop_arriving():
    state = LiveState()
    assert state.snapshot().health(60).reason == "no model loaded"
    state.set_model(ModelInfo("m", "1"))
    assert state.snapshot().health(60).reason == "source: starting"
    state.set_source_state("open")
    assert state.snapshot().health(60).reason == "no frame classified yet"
    state.on_result(result("a"))
    assert state.snapshot().health(stale_after_s=60).ok
    reason = wait_for(lambda: (h := state.snapshot().health(stale_after_s=0.05)) and not h.ok and h.reason)
    assert reason.startswith("no frame classified for ")


def test_a_lost_source_is_unhealthy_with_its_error_which_is_kept_after_recovery():
    state = healthy_state()
    state.on_result(result("a"))
    state.set_source_state("reconnecting", "camera unplugged")
    snapshot = state.snapshot()
    assert snapshot.health(60).reason == "source: reconnecting: camera unplugged"
    assert snapshot.status(60)["source"] == {"ok": False, "reason": "reconnecting: camera unplugged"}
    state.set_source_state("open")
    snapshot = state.snapshot()
    assert snapshot.health(60).ok and snapshot.source_error == "camera unplugged"
    assert snapshot.status(60)["source"] == {"ok": True, "reason": "open"}


def test_stats_summarise_latency_and_frame_age():
    state = LiveState()
    for n, (latency, age) in enumerate([(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (10.0, 100.0)]):
        state.on_result(result("a", n, latency_ms=latency, frame_age_ms=age))
    state.on_capture(1.0, captured=7, dropped=2, skipped=1)
    stats = state.snapshot().stats()
    assert (stats["frames"], stats["dropped_frames"]) == (4, 3)  # stale and undecodable alike
    assert stats["latency_ms"] == 4.0 and stats["frame_age_ms"] == 40.0
    assert stats["latency_p95_ms"] == float(np.percentile([1, 2, 3, 10], 95).round(3))
    assert stats["fps"] > 0


def test_histograms_count_each_observation_in_its_bucket():
    state = LiveState()
    state.on_result(result("a", latency_ms=1.0, frame_age_ms=12.0))  # at a bound: counted in it (le)
    state.on_result(result("a", latency_ms=4000.0, frame_age_ms=60_000.0))  # above every bound
    snapshot = state.snapshot()
    latency, age = snapshot.latency_histogram, snapshot.frame_age_histogram
    assert latency.counts[LATENCY_BUCKETS.index(0.001)] == 1 and latency.counts[-1] == 1 and sum(latency.counts) == 2
    assert age.counts[FRAME_AGE_BUCKETS.index(0.025)] == 1 and age.counts[-1] == 1
    assert latency.total == pytest.approx(4.001) and age.total == pytest.approx(60.012)


def test_status_lists_each_sinks_counters(tmp_path):
    state = LiveState("dev")
    sink = JsonlSink(OutputSettings(jsonl=str(tmp_path / "r.jsonl")))
    state.add_sink(sink)
    sink.start()
    sink.submit(result("a"))
    sink.close()
    status = state.snapshot().status(stale_after_s=10)
    assert status["sinks"]["jsonl"]["delivered"] == 1 and status["device"] == "dev"
    assert status["health"] == {"ok": False, "reason": "no model loaded"} and status["model"] is None


def test_reloads_are_counted_and_the_last_outcome_kept():
    state = healthy_state()
    state.on_reload(False, "bundle 2 refused")
    state.on_reload(True, "m 3 is live")
    snapshot = state.snapshot()
    assert (snapshot.reloads, snapshot.reload_failures) == (2, 1)
    reload = snapshot.status(10)["reload"]
    assert (reload["ok"], reload["message"]) == (True, "m 3 is live")


def test_status_line_and_summary_name_model_rate_last_result_and_source():
    state = healthy_state()
    state.on_capture(1.0, captured=3, dropped=1)
    state.on_result(result("cat", latency_ms=2.5, frame_age_ms=7.25))
    snapshot = state.snapshot()
    assert snapshot.status_line().startswith("m 1: ")
    assert snapshot.status_line().endswith(" 1 frames, last cat 0.75; source camera")
    assert snapshot.summary() == (
        "3 frames captured, 1 classified, 1 dropped as stale, 0 skipped, 0 reconnects; source open;"
        " last latency 2.5 ms, frame age 7.2 ms"
    )


def test_writers_from_two_threads_lose_no_count():
    state = LiveState()

    def capture() -> None:
        for n in range(5000):
            state.on_capture(float(n), dropped=n % 2)

    thread = threading.Thread(target=capture)
    thread.start()
    for n in range(5000):
        state.on_result(result("a", n))
    thread.join()
    snapshot = state.snapshot()
    assert (snapshot.frames_captured, snapshot.frames_dropped, snapshot.frames_classified) == (5000, 2500, 5000)
    assert snapshot.last_frame_ts == 4999.0 and snapshot.result is not None and snapshot.result.frame == 4999
