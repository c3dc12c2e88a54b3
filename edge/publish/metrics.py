"""Prometheus metrics: a view of the live state, read at scrape time.

Only the HTTP server imports this module, so ``prometheus_client`` is loaded only with ``[http]``.
The registry is our own, so several servers can live in one process (tests).
"""

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from edge.state import FPS_WINDOW_S, Histogram, LiveState


def registry_for(state: LiveState) -> CollectorRegistry:
    """The daemon's metrics and the process's (CPU, memory, file descriptors)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector(state))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class CountCollector:
    """One counter read at scrape time from whoever keeps it (the HTTP server counts its own refusals)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.total)


class _Collector:
    """The counters the live state and the sinks keep anyway, as Prometheus families."""

    def __init__(self, state: LiveState) -> None:
        self._state = state

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: the metric set depends on the sinks attached

    def collect(self) -> Iterator[Metric]:
        snapshot = self._state.snapshot()
        yield CounterMetricFamily("edgesight_frames", "Frames classified.", value=snapshot.frames_classified)
        yield CounterMetricFamily(
            "edgesight_frames_dropped", "Frames skipped without classification.", value=snapshot.dropped_frames
        )
        yield GaugeMetricFamily("edgesight_fps", f"Frames classified per second over {FPS_WINDOW_S:g} s.", snapshot.fps)
        yield _histogram(
            "edgesight_inference_latency_seconds",
            "Time from frame to scores: preprocessing, inference and postprocessing.",
            snapshot.latency_histogram,
        )
        yield _histogram(
            "edgesight_frame_age_seconds",
            "Age of a frame when its result was ready: capture to result.",
            snapshot.frame_age_histogram,
        )
        yield CounterMetricFamily(
            "edgesight_reload_failures", "Reloads refused: the old model kept running.", value=snapshot.reload_failures
        )
        yield GaugeMetricFamily("edgesight_source_up", "1 while the frame source delivers.", int(snapshot.source_ok))
        yield CounterMetricFamily(
            "edgesight_frames_kept", "Frames kept in the inbox for labelling.", value=snapshot.frames_kept
        )
        yield CounterMetricFamily(
            "edgesight_frames_near_copies", "Frames not kept: near-copies of recent ones.", value=snapshot.near_copies
        )
        yield CounterMetricFamily(
            "edgesight_inbox_evicted", "Frames removed from the full inbox, oldest first.", value=snapshot.inbox_evicted
        )
        model = snapshot.model
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
        for name, counters in snapshot.sinks:
            values = counters.to_json()
            for key, family in families.items():
                family.add_metric([name], float(values[key]))
        yield from families.values()
