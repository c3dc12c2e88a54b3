"""One classified frame as one frozen record, with the one JSON form every sink publishes.

The service builds it once per frame, already thresholded; the JSON lines, MQTT, the HTTP API, the
data loop and the live state all take this record, and none of them builds its own JSON.
"""

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Smoothed:
    """The label and score after temporal smoothing (``[results] smoothing``)."""

    label: str
    score: float


@dataclass(frozen=True)
class Result:
    ts: float  # wall-clock capture time of the frame, seconds since the epoch
    frame: int  # the frame's position in the capture sequence
    label: str  # the top label, "unknown" when its score is below [results] threshold
    score: float  # the top label's score, also when the label is "unknown"
    topk: tuple[tuple[str, float], ...]
    latency_ms: float  # preprocessing, inference and postprocessing
    frame_age_ms: float  # capture to result
    state: str | None = None  # the debounced label; None until enough frames agree
    state_changed: bool = False
    smoothed: Smoothed | None = None  # only with smoothing configured
    path: str | None = None  # the image file, for a folder or glob source

    def to_json(self) -> dict[str, Any]:
        """The result as JSON: rounded numbers; ``path`` and ``smoothed`` only when set."""
        document: dict[str, Any] = {"ts": round(self.ts, 3), "frame": self.frame}
        if self.path is not None:
            document["path"] = self.path
        document |= {
            "label": self.label,
            "score": round(self.score, 4),
            "topk": [[label, round(score, 4)] for label, score in self.topk],
            # One precision for both: the age includes the latency, and rounding alike keeps it so.
            "latency_ms": round(self.latency_ms, 3),
            "frame_age_ms": round(self.frame_age_ms, 3),
            "state": self.state,
            "state_changed": self.state_changed,
        }
        if self.smoothed is not None:
            document["smoothed"] = {"label": self.smoothed.label, "score": round(self.smoothed.score, 4)}
        return document

    @cached_property
    def encoded(self) -> bytes:
        """``to_json()`` as compact UTF-8 JSON, encoded once however many sinks send it."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode()
