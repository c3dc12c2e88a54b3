"""The daemon's health in one place: counters and last values that publishers (HTTP, MQTT) read.

Writers are the capture thread and the inference loop; readers take a consistent ``snapshot()``.
"""

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

SOURCE_STATES = ("starting", "open", "reconnecting", "ended", "failed", "stopped")


@dataclass(frozen=True)
class HealthSnapshot:
    frames_captured: int = 0
    frames_classified: int = 0
    frames_dropped: int = 0  # stale: replaced by a newer frame before inference took them
    frames_skipped: int = 0  # undecodable images in a folder source
    reconnects: int = 0  # times the source was opened again after a failure
    source: str = ""
    source_state: str = "starting"
    source_error: str = ""  # the last failure, kept after recovery
    last_frame_ts: float = 0.0
    last_result: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0  # of the last classification
    frame_age_ms: float = 0.0  # of the last result
    model: dict[str, Any] = field(default_factory=dict)
    dataloop_saved: int = 0
    dataloop_removed: int = 0
    reload_error: str = ""  # why the last reload was refused; empty after a good one
    started: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"{self.frames_captured} frames captured, {self.frames_classified} classified, {self.frames_dropped}"
            f" dropped as stale, {self.frames_skipped} skipped, {self.reconnects} reconnects; source"
            f" {self.source_state}; last latency {self.latency_ms:.1f} ms, frame age {self.frame_age_ms:.1f} ms"
        )


class Health:
    """Thread-safe holder of the current ``HealthSnapshot``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = HealthSnapshot()

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            return self._state

    def update(self, **values: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **values)

    def count(self, **increments: int) -> None:
        with self._lock:
            current = self._state
            self._state = replace(current, **{k: getattr(current, k) + v for k, v in increments.items()})
