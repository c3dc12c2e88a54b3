"""The daemon's live state, updated by the service and read by the sinks and the HTTP server.

The service calls ``on_result`` once per classified frame, ``on_drop`` for frames it skipped,
``set_source_state`` when the source opens, fails or ends, and ``set_model`` when a bundle goes live.
Readers get consistent copies: the latest result, the latest frame as an annotated JPEG, flat stats
for MQTT, the status document for ``/api/status``, health for ``/healthz``, and Prometheus metrics
from ``registry`` (our own, so several instances can live in one process).
"""

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.process_collector import ProcessCollector

from edge import __version__
from edge.publish.base import Sink
from edge.publish.snapshot import annotate, encode_jpeg

# Seconds; a Pi Zero 2 W classifies a small model in a few milliseconds, a large one in hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FRAME_AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FPS_WINDOW_S = 10.0  # fps is measured over the results of the last this many seconds
RECENT = 256  # latencies and frame ages kept for means and percentiles


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str = ""
    runtime: str = ""
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str  # "ok", or why not, for /healthz and logs


class Telemetry:
    """Thread-safe live state: one writer (the service loop), many readers (HTTP threads, sink workers)."""

    def __init__(self, device_id: str = "") -> None:
        self.device_id = device_id
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._model: ModelInfo | None = None
        self._source_ok, self._source_reason = False, "no source opened yet"
        self._frames = self._dropped_frames = 0
        self._result: dict[str, Any] | None = None
        self._frame: np.ndarray | None = None
        self._last_result_at: float | None = None
        self._result_times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=RECENT)
        self._frame_ages: deque[float] = deque(maxlen=RECENT)
        self._sinks: list[Sink] = []
        self._reloads = self._reload_failures = 0
        self._reload: dict[str, Any] | None = None
        self._snapshot_lock = threading.Lock()
        self._snapshot_key: tuple[int, int, int] | None = None
        self._snapshot: bytes | None = None

        self.registry = CollectorRegistry(auto_describe=True)
        self._latency_histogram = Histogram(
            "edgesight_inference_latency_seconds",
            "Time from frame to scores: preprocessing, inference and postprocessing.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._frame_age_histogram = Histogram(
            "edgesight_frame_age_seconds",
            "Age of a frame when its result was ready: capture to result.",
            buckets=FRAME_AGE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)

    # Written by the service.

    def on_result(
        self, frame_image_bgr: np.ndarray | None, result: dict[str, Any], frame_age_ms: float, latency_ms: float
    ) -> None:
        """Record one classified frame. The frame is kept by reference: do not modify it afterwards."""
        now = time.monotonic()
        with self._lock:
            self._frames += 1
            self._result = dict(result)
            if frame_image_bgr is not None:
                self._frame = frame_image_bgr
            self._last_result_at = now
            self._result_times.append(now)
            while self._result_times and self._result_times[0] < now - FPS_WINDOW_S:
                self._result_times.popleft()
            self._latencies.append(latency_ms)
            self._frame_ages.append(frame_age_ms)
        self._latency_histogram.observe(latency_ms / 1000)
        self._frame_age_histogram.observe(frame_age_ms / 1000)

    def on_drop(self, n: int = 1) -> None:
        """Count frames the service skipped (stale frames replaced by newer ones, failed reads)."""
        with self._lock:
            self._dropped_frames += n

    def set_source_state(self, ok: bool, reason: str = "") -> None:
        with self._lock:
            self._source_ok, self._source_reason = ok, reason or ("ok" if ok else "source failed")

    def set_model(
        self, name: str, version: str, *, sha256: str = "", runtime: str = "", labels: tuple[str, ...] = ()
    ) -> None:
        with self._lock:
            self._model = ModelInfo(name, version, sha256, runtime, tuple(labels))

    def on_reload(self, ok: bool, message: str) -> None:
        """Record a reload's outcome: a refused bundle must be visible, not only in the journal."""
        with self._lock:
            self._reloads += 1
            self._reload_failures += 0 if ok else 1
            self._reload = {"ok": ok, "message": message, "ts": round(time.time(), 3)}

    def add_sink(self, sink: Sink) -> None:
        """Report a sink's counters in /metrics, /api/status and the stats."""
        with self._lock:
            self._sinks.append(sink)

    # Read by the sinks and the HTTP server.

    @property
    def model(self) -> ModelInfo | None:
        with self._lock:
            return self._model

    def latest_result(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self._result is None else dict(self._result)

    def health(self, stale_after_s: float) -> Health:
        """Healthy while a model is loaded, the source is up and a frame was classified recently."""
        with self._lock:
            if self._model is None:
                return Health(False, "no model loaded")
            if not self._source_ok:
                return Health(False, f"source: {self._source_reason}")
            if self._last_result_at is None:
                return Health(False, "no frame classified yet")
            age = time.monotonic() - self._last_result_at
        if age > stale_after_s:
            return Health(False, f"no frame classified for {age:.1f} s")
        return Health(True, "ok")

    def stats(self) -> dict[str, Any]:
        """Flat numbers for the MQTT ``stats`` topic and Home Assistant's sensors."""
        with self._lock:
            latencies, ages = np.asarray(self._latencies), np.asarray(self._frame_ages)
            frames, dropped, fps = self._frames, self._dropped_frames, self._fps()
            reloads, reload_failures = self._reloads, self._reload_failures
            sinks = list(self._sinks)
        counters = [s.counters() for s in sinks]
        return {
            "ts": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "frames": frames,
            "fps": round(fps, 2),
            "latency_ms": _mean(latencies),
            "latency_p95_ms": _p95(latencies),
            "frame_age_ms": _mean(ages),
            "frame_age_p95_ms": _p95(ages),
            "dropped_frames": dropped,
            "publish_dropped": sum(c.dropped for c in counters),
            "publish_failed": sum(c.failed for c in counters),
            "reloads": reloads,
            "reload_failures": reload_failures,
        }

    def status(self, stale_after_s: float) -> dict[str, Any]:
        """The document behind ``/api/status``."""
        health = self.health(stale_after_s)
        stats = self.stats()
        with self._lock:
            model = None if self._model is None else {**asdict(self._model), "labels": list(self._model.labels)}
            source = {"ok": self._source_ok, "reason": self._source_reason}
            reload = None if self._reload is None else dict(self._reload)
            sinks = list(self._sinks)
        return {
            "device": self.device_id,
            "edgesight_version": __version__,
            "uptime_s": stats["uptime_s"],
            "health": {"ok": health.ok, "reason": health.reason},
            "model": model,
            "source": source,
            "counters": {"frames": stats["frames"], "dropped_frames": stats["dropped_frames"]},
            "fps": stats["fps"],
            "latency_ms": {"mean": stats["latency_ms"], "p95": stats["latency_p95_ms"]},
            "frame_age_ms": {"mean": stats["frame_age_ms"], "p95": stats["frame_age_p95_ms"]},
            "sinks": {s.name: asdict(s.counters()) for s in sinks},
            "reload": reload,
        }

    def snapshot(self, width: int, quality: int) -> bytes | None:
        """The latest frame with its top-k drawn on it, as JPEG; encoded once per frame, outside the writer's lock."""
        with self._lock:
            frame, result, frames = self._frame, self._result, self._frames
        if frame is None or result is None:
            return None
        key = (frames, width, quality)
        with self._snapshot_lock:
            if key != self._snapshot_key:
                self._snapshot = encode_jpeg(annotate(frame, result.get("topk", []), width), quality)
                self._snapshot_key = key
            return self._snapshot

    def _fps(self) -> float:
        """Results per second over the last window (hold ``_lock``)."""
        times = self._result_times
        if len(times) < 2 or time.monotonic() - times[-1] > FPS_WINDOW_S:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def _metric_values(self) -> dict[str, Any]:
        with self._lock:
            return {
                "frames": self._frames,
                "dropped": self._dropped_frames,
                "fps": self._fps(),
                "source_ok": self._source_ok,
                "model": self._model,
                "sinks": list(self._sinks),
                "reload_failures": self._reload_failures,
            }


def _mean(values: np.ndarray) -> float:
    return round(float(values.mean()), 3) if values.size else 0.0


def _p95(values: np.ndarray) -> float:
    return round(float(np.percentile(values, 95)), 3) if values.size else 0.0


class _Collector:
    """Prometheus view of the counters Telemetry and the sinks keep anyway, read at scrape time."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def describe(self) -> list:
        return []  # unchecked collector: the metric set depends on the sinks attached

    def collect(self) -> Iterator:
        values = self._telemetry._metric_values()
        yield CounterMetricFamily("edgesight_frames", "Frames classified.", value=values["frames"])
        yield CounterMetricFamily(
            "edgesight_frames_dropped", "Frames skipped without classification.", value=values["dropped"]
        )
        yield GaugeMetricFamily(
            "edgesight_fps", f"Frames classified per second over {FPS_WINDOW_S:g} s.", values["fps"]
        )
        yield CounterMetricFamily(
            "edgesight_reload_failures", "Reloads refused: the old model kept running.", value=values["reload_failures"]
        )
        yield GaugeMetricFamily("edgesight_source_up", "1 while the frame source delivers.", int(values["source_ok"]))
        model = values["model"]
        info = InfoMetricFamily("edgesight_model", "The bundle that is live.", labels=("name", "version", "sha256"))
        if model is not None:
            info.add_metric([model.name, model.version, model.sha256], {"runtime": model.runtime})
        yield info
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "delivered": CounterMetricFamily(
                "edgesight_publish_delivered", "Items a sink handed over.", labels=("sink",)
            ),
            "dropped": CounterMetricFamily(
                "edgesight_publish_dropped", "Items a sink dropped: queue full or closing.", labels=("sink",)
            ),
            "failed": CounterMetricFamily(
                "edgesight_publish_failures", "Items the destination refused.", labels=("sink",)
            ),
            "queued": GaugeMetricFamily("edgesight_publish_queue_depth", "Items waiting in a sink.", labels=("sink",)),
            "connected": GaugeMetricFamily(
                "edgesight_publish_connected", "1 while a sink's destination is reachable.", labels=("sink",)
            ),
        }
        for sink in values["sinks"]:
            counters = asdict(sink.counters())
            for key, family in families.items():
                family.add_metric([sink.name], float(counters[key]))
        yield from families.values()
