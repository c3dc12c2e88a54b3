"""The daemon's live state, one object beside the service, and the consistent snapshots readers take.

Writers are the capture thread (frames captured, dropped and skipped, the source's state) and the
service loop (results, the model, reloads); a frame costs each of them one lock acquisition and no
copies. Readers (the HTTP page and API, ``/metrics``, MQTT stats, systemd STATUS, the log) call
``snapshot()``: a frozen copy in which means, percentiles and rates are computed, at read time.
"""

import threading
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edge import __version__
from edge.publish.base import Sink, SinkCounters
from edge.result import Result

if TYPE_CHECKING:
    from edge.collect.collector import Collector

SOURCE_STATES = ("starting", "open", "reconnecting", "ended", "failed", "stopped")
# Seconds; a Pi Zero 2 W classifies a small model in a few milliseconds, a large one in hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FRAME_AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FPS_WINDOW_S = 10.0  # fps is measured over the results of the last this many seconds
RECENT = 256  # latencies and frame ages kept for means and percentiles


@dataclass(frozen=True)
class ModelInfo:
    """The model that is live, as the page, ``/metrics``, MQTT and the log name it."""

    name: str
    version: str
    sha256: str = ""
    runtime: str = ""
    labels: tuple[str, ...] = ()
    golden_checked: int = 0  # golden samples that agreed when it was loaded
    fast_preprocessing: bool = False

    @property
    def title(self) -> str:
        return f"{self.name} {self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "runtime": self.runtime,
            "labels": list(self.labels),
            "golden_checked": self.golden_checked,
            "fast_preprocessing": self.fast_preprocessing,
        }


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str  # "ok", or why not, for /healthz and logs


@dataclass(frozen=True)
class Reload:
    """A reload's outcome: a refused bundle must be visible, not only in the journal."""

    ok: bool
    message: str
    ts: float  # wall clock


@dataclass(frozen=True)
class Histogram:
    """How many observations fell at or below each bound; ``counts`` has one more entry, above them all."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float  # the sum of the observations


@dataclass(frozen=True)
class Snapshot:
    """The live state at one moment; every published view of the daemon is derived from one of these."""

    device_id: str
    uptime_s: float
    frames_captured: int
    frames_classified: int
    frames_dropped: int  # stale: replaced by a newer frame before inference took them
    frames_skipped: int  # undecodable images of a folder source
    reconnects: int  # times the source was opened again after a failure
    source: str
    source_state: str
    source_error: str  # the last failure, kept after recovery
    last_frame_ts: float
    result: Result | None
    result_age_s: float | None  # since the last result was recorded
    model: ModelInfo | None
    fps: float
    latency_ms: float  # mean over the recent results
    latency_p95_ms: float
    frame_age_ms: float
    frame_age_p95_ms: float
    latency_histogram: Histogram  # seconds
    frame_age_histogram: Histogram  # seconds
    reloads: int
    reload_failures: int
    reload: Reload | None
    collecting: bool  # frames are kept for labelling at an interval and on scene changes
    frames_seen: int  # taken by the loop: classified, or only looked at while collecting without a model
    seen_age_s: float | None  # since the loop last took a frame
    frames_kept: int  # into the inbox, for labelling (the collector and the data loop)
    near_copies: int  # not kept: too close to a frame kept recently
    inbox_evicted: int  # removed from the full inbox to make room, oldest first
    sinks: tuple[tuple[str, SinkCounters], ...]

    @property
    def source_ok(self) -> bool:
        return self.source_state == "open"

    @property
    def source_reason(self) -> str:
        if self.source_ok or not self.source_error:
            return self.source_state
        return f"{self.source_state}: {self.source_error}"

    @property
    def dropped_frames(self) -> int:
        """Frames captured but never classified: stale ones and undecodable images."""
        return self.frames_dropped + self.frames_skipped

    def health(self, stale_after_s: float) -> Health:
        """Healthy while a model is loaded (or frames are collected without one), the source is up and a
        frame was classified (collected) recently."""
        if self.model is None and not self.collecting:
            return Health(False, "no model loaded")
        if not self.source_ok:
            return Health(False, f"source: {self.source_reason}")
        done, age = ("classified", self.result_age_s) if self.model else ("taken", self.seen_age_s)
        if age is None:
            return Health(False, f"no frame {done} yet")
        if age > stale_after_s:
            return Health(False, f"no frame {done} for {age:.1f} s")
        return Health(True, "ok")

    def stats(self) -> dict[str, Any]:
        """Flat numbers for the MQTT ``stats`` topic and Home Assistant's sensors.

        Figures not measured yet are null (``unknown`` in Home Assistant), not 0, which its history would
        draw as a dip to zero after every start: latency and frame age until a frame is classified, the
        rate until two are.
        """
        measured = self.frames_classified > 0
        return {
            "ts": round(time.time(), 3),
            "uptime_s": self.uptime_s,
            "frames": self.frames_classified,
            "fps": round(self.fps, 2) if self.frames_classified > 1 else None,
            "latency_ms": self.latency_ms if measured else None,
            "latency_p95_ms": self.latency_p95_ms if measured else None,
            "frame_age_ms": self.frame_age_ms if measured else None,
            "frame_age_p95_ms": self.frame_age_p95_ms if measured else None,
            "dropped_frames": self.dropped_frames,
            "publish_dropped": sum(c.dropped for _, c in self.sinks),
            "publish_failed": sum(c.failed for _, c in self.sinks),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
        }

    def status(self, stale_after_s: float) -> dict[str, Any]:
        """The document behind ``/api/status``."""
        health = self.health(stale_after_s)
        reload = self.reload
        return {
            "device": self.device_id,
            "edgesight_version": __version__,
            "uptime_s": self.uptime_s,
            "health": {"ok": health.ok, "reason": health.reason},
            "model": None if self.model is None else self.model.to_json(),
            "source": {"ok": self.source_ok, "reason": self.source_reason},
            "counters": {"frames": self.frames_classified, "dropped_frames": self.dropped_frames},
            "fps": round(self.fps, 2),
            "latency_ms": {"mean": self.latency_ms, "p95": self.latency_p95_ms},
            "frame_age_ms": {"mean": self.frame_age_ms, "p95": self.frame_age_p95_ms},
            "sinks": {name: counters.to_json() for name, counters in self.sinks},
            "reload": None if reload is None else {"ok": reload.ok, "message": reload.message, "ts": reload.ts},
            "collect": {
                "collecting": self.collecting,
                "frames_seen": self.frames_seen,
                "kept": self.frames_kept,
                "near_copies": self.near_copies,
                "inbox_evicted": self.inbox_evicted,
            },
        }

    def summary(self) -> str:
        """One line of counters for the log."""
        latency, age = (self.result.latency_ms, self.result.frame_age_ms) if self.result else (0.0, 0.0)
        kept = f"; {self.frames_kept} kept for labelling, {self.near_copies} near-copies skipped"
        return (
            f"{self.frames_captured} frames captured, {self.frames_classified} classified, {self.frames_dropped}"
            f" dropped as stale, {self.frames_skipped} skipped, {self.reconnects} reconnects; source"
            f" {self.source_state}; last latency {latency:.1f} ms, frame age {age:.1f} ms"
            f"{kept if self.collecting or self.frames_kept else ''}"
        )

    def status_line(self) -> str:
        """systemd's STATUS= line."""
        kept = f"{self.frames_kept} kept for labelling, {self.near_copies} near-copies skipped"
        if self.model is None:
            return f"collecting without a model: {self.frames_seen} frames seen, {kept}; source {self.source}"
        label, score = (self.result.label, self.result.score) if self.result else (None, 0.0)
        line = f"{self.model.title}: {self.fps:.1f} fps, {self.frames_classified} frames, last {label} {score:.2f}"
        return f"{line}{'; ' + kept if self.collecting or self.frames_kept else ''}; source {self.source}"


class LiveState:
    """Thread-safe counters and last values of the running daemon; see the module's docstring."""

    def __init__(self, device_id: str = "") -> None:
        self.device_id = device_id
        self._started = time.monotonic()
        self._lock = threading.Lock()
        # The capture thread's side.
        self._captured = self._dropped = self._skipped = self._reconnects = 0
        self._source, self._source_state, self._source_error = "", "starting", ""
        self._last_frame_ts = 0.0
        # The service loop's side.
        self._classified = 0
        self._result: Result | None = None
        self._image: np.ndarray | None = None
        self._last_result_at: float | None = None
        self._result_times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=RECENT)
        self._frame_ages: deque[float] = deque(maxlen=RECENT)
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._frame_age_counts = [0] * (len(FRAME_AGE_BUCKETS) + 1)
        self._latency_sum = self._frame_age_sum = 0.0
        self._model: ModelInfo | None = None
        self._reloads = self._reload_failures = 0
        self._reload: Reload | None = None
        self._sinks: list[Sink] = []
        self._seen = 0
        self._last_seen_at: float | None = None
        self._collector: Collector | None = None
        self._collecting = False

    # Written by the capture thread.

    def set_source(self, description: str) -> None:
        """A new source is about to be opened."""
        with self._lock:
            self._source, self._source_state, self._source_error = description, "starting", ""

    def set_source_state(self, state: str, error: str = "") -> None:
        """One of ``SOURCE_STATES``; an ``error`` replaces the last one, which is otherwise kept."""
        if state not in SOURCE_STATES:
            raise ValueError(f"unknown source state {state!r}")
        with self._lock:
            self._source_state = state
            if error:
                self._source_error = error

    def on_reconnect(self) -> None:
        with self._lock:
            self._reconnects += 1

    def on_capture(self, ts: float, captured: int = 1, dropped: int = 0, skipped: int = 0) -> None:
        """Count frames read (``ts``: the last one's capture time), stale frames dropped and files skipped."""
        with self._lock:
            self._captured += captured
            self._dropped += dropped
            self._skipped += skipped
            if captured:
                self._last_frame_ts = ts

    # Written by the service loop.

    def set_model(self, model: ModelInfo | None) -> None:
        with self._lock:
            self._model = model

    def on_result(self, result: Result, image: np.ndarray | None = None) -> None:
        """Record one classified frame; ``image`` is kept by reference for the snapshot: do not modify it."""
        now = time.monotonic()
        latency_s, age_s = result.latency_ms / 1000, result.frame_age_ms / 1000
        with self._lock:
            self._classified += 1
            self._seen += 1
            self._result = result
            if image is not None:
                self._image = image
            self._last_result_at = self._last_seen_at = now
            times = self._result_times
            times.append(now)
            while times[0] < now - FPS_WINDOW_S:
                times.popleft()
            self._latencies.append(result.latency_ms)
            self._frame_ages.append(result.frame_age_ms)
            self._latency_counts[bisect_left(LATENCY_BUCKETS, latency_s)] += 1
            self._frame_age_counts[bisect_left(FRAME_AGE_BUCKETS, age_s)] += 1
            self._latency_sum += latency_s
            self._frame_age_sum += age_s

    def on_frame(self, image: np.ndarray) -> None:
        """Record a frame taken without a model (collecting); kept by reference for the snapshot."""
        with self._lock:
            self._seen += 1
            self._image = image
            self._result = None
            self._last_seen_at = time.monotonic()

    def on_reload(self, ok: bool, message: str) -> None:
        with self._lock:
            self._reloads += 1
            self._reload_failures += 0 if ok else 1
            self._reload = Reload(ok, message, round(time.time(), 3))

    def add_sink(self, sink: Sink) -> None:
        """Report a sink's counters (read when a snapshot is taken)."""
        with self._lock:
            self._sinks.append(sink)

    def set_collector(self, collector: "Collector | None", collecting: bool) -> None:
        """Report what the collector keeps (read when a snapshot is taken); ``collecting``: frames are kept
        at an interval and on scene changes, so the daemon is healthy without a model."""
        with self._lock:
            self._collector, self._collecting = collector, collecting

    # Read by everyone else.

    @property
    def model(self) -> ModelInfo | None:
        with self._lock:
            return self._model

    def latest(self) -> tuple[int, Result | None, np.ndarray | None]:
        """Frames taken so far, the latest result (None for a frame only collected) and the latest image."""
        with self._lock:
            return self._seen, self._result, self._image

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        with self._lock:
            latencies = np.fromiter(self._latencies, np.float64, len(self._latencies))
            ages = np.fromiter(self._frame_ages, np.float64, len(self._frame_ages))
            times = self._result_times
            fps = _rate(times[0], times[-1], len(times), now) if times else 0.0
            sinks, collector = list(self._sinks), self._collector
            snapshot = Snapshot(
                device_id=self.device_id,
                uptime_s=round(now - self._started, 1),
                frames_captured=self._captured,
                frames_classified=self._classified,
                frames_dropped=self._dropped,
                frames_skipped=self._skipped,
                reconnects=self._reconnects,
                source=self._source,
                source_state=self._source_state,
                source_error=self._source_error,
                last_frame_ts=self._last_frame_ts,
                result=self._result,
                result_age_s=None if self._last_result_at is None else now - self._last_result_at,
                model=self._model,
                fps=fps,
                latency_ms=0.0,  # computed below
                latency_p95_ms=0.0,
                frame_age_ms=0.0,
                frame_age_p95_ms=0.0,
                latency_histogram=Histogram(LATENCY_BUCKETS, tuple(self._latency_counts), self._latency_sum),
                frame_age_histogram=Histogram(FRAME_AGE_BUCKETS, tuple(self._frame_age_counts), self._frame_age_sum),
                reloads=self._reloads,
                reload_failures=self._reload_failures,
                reload=self._reload,
                collecting=self._collecting,
                frames_seen=self._seen,
                seen_age_s=None if self._last_seen_at is None else now - self._last_seen_at,
                frames_kept=0,
                near_copies=0,
                inbox_evicted=0,
                sinks=(),
            )
        # The costly parts outside the writers' lock: percentiles, and the counters behind other locks.
        return replace(
            snapshot,
            latency_ms=_mean(latencies),
            latency_p95_ms=_p95(latencies),
            frame_age_ms=_mean(ages),
            frame_age_p95_ms=_p95(ages),
            frames_kept=sum(collector.counters.kept.values()) if collector else 0,
            near_copies=collector.counters.duplicates if collector else 0,
            inbox_evicted=collector.inbox.evicted if collector else 0,
            sinks=tuple((sink.name, sink.counters()) for sink in sinks),
        )


def _rate(first: float, last: float, count: int, now: float) -> float:
    """Results per second over the window, 0 when results stopped coming."""
    if count < 2 or now - last > FPS_WINDOW_S:
        return 0.0
    return (count - 1) / max(last - first, 1e-6)


def _mean(values: np.ndarray) -> float:
    return round(float(values.mean()), 3) if values.size else 0.0


def _p95(values: np.ndarray) -> float:
    return round(float(np.percentile(values, 95)), 3) if values.size else 0.0
