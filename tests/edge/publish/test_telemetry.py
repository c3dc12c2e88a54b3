"""Live state: health turns stale, stats summarise the recent window, the snapshot is encoded once per frame."""

import cv2
import numpy as np

from edge.publish.jsonl import JsonlSink
from edge.publish.settings import OutputSettings
from edge.publish.telemetry import Telemetry
from tests.helpers import wait_for


def result(label: str) -> dict:
    return {"label": label, "score": 0.75, "topk": [[label, 0.75], ["x", 0.25]], "latency_ms": 2.0}


def test_health_turns_unhealthy_when_frames_stop_arriving():
    telemetry = Telemetry()
    telemetry.set_model("m", "1")
    telemetry.set_source_state(True)
    telemetry.on_result(None, result("a"), 1.0, 1.0)
    assert telemetry.health(stale_after_s=60).ok
    reason = wait_for(lambda: (h := telemetry.health(stale_after_s=0.05)) and not h.ok and h.reason)
    assert reason.startswith("no frame classified for ")


def test_stats_summarise_latency_and_frame_age():
    telemetry = Telemetry()
    for latency, age in [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (10.0, 100.0)]:
        telemetry.on_result(None, result("a"), frame_age_ms=age, latency_ms=latency)
    telemetry.on_drop(3)
    stats = telemetry.stats()
    assert (stats["frames"], stats["dropped_frames"]) == (4, 3)
    assert stats["latency_ms"] == 4.0 and stats["frame_age_ms"] == 40.0
    assert stats["latency_p95_ms"] == float(np.percentile([1, 2, 3, 10], 95).round(3))
    assert stats["fps"] > 0


def test_status_lists_each_sinks_counters(tmp_path):
    telemetry = Telemetry("dev")
    sink = JsonlSink(OutputSettings(jsonl=str(tmp_path / "r.jsonl")))
    telemetry.add_sink(sink)
    sink.start()
    sink.submit({"a": 1})
    sink.close()
    status = telemetry.status(stale_after_s=10)
    assert status["sinks"]["jsonl"]["delivered"] == 1 and status["device"] == "dev"
    assert status["health"] == {"ok": False, "reason": "no model loaded"} and status["model"] is None


def test_snapshot_draws_on_a_copy_and_is_encoded_once_per_frame():
    telemetry = Telemetry()
    assert telemetry.snapshot(320, 80) is None
    frame = np.full((48, 64, 3), 200, np.uint8)
    telemetry.on_result(frame, result("cat"), 1.0, 1.0)
    first = telemetry.snapshot(320, 80)
    assert telemetry.snapshot(320, 80) is first  # cached until the next frame
    assert (frame == 200).all()  # the service's frame is not drawn on
    image = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    assert image[5:40, 170:300].mean() < 200  # the top-k panel and bar are drawn at the top
    telemetry.on_result(frame, result("dog"), 1.0, 1.0)
    assert telemetry.snapshot(320, 80) != first
