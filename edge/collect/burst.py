"""Frames straight into a class, like holding a record button: "capture now" on the live view, and
``edgesight collect --label open --count 50 --interval 0.5``.

The daemon publishes every frame it looks at into ``LatestFrame``; a burst waits for frames newer than
the last one it kept, so it never stores the same frame twice.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge.collect.collector import Origin, Suggestion
from edge.collect.dataset import class_problem
from edge.collect.labelling import Labelling
from edge.collect.sample import Sample


@dataclass(frozen=True)
class LiveFrame:
    image: np.ndarray  # BGR, after the roi crop
    captured: float  # seconds since the epoch
    index: int  # in the capture sequence
    origin: Origin
    suggestion: Suggestion | None = None


class LatestFrame:
    """The newest frame, for other threads: one writer (the daemon loop), many readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: LiveFrame | None = None

    def publish(self, frame: LiveFrame) -> None:
        with self._cond:
            self._frame = frame
            self._cond.notify_all()

    def latest(self) -> LiveFrame | None:
        with self._cond:
            return self._frame

    def wait_newer(self, index: int, timeout: float) -> LiveFrame | None:
        """The newest frame with a larger index than ``index``; None if none comes within ``timeout`` s."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None and self._frame.index > index, timeout)
            frame = self._frame
            return frame if frame is not None and frame.index > index else None


@dataclass(frozen=True)
class Kept:
    """One frame of a burst as it was stored."""

    number: int  # 1-based, within the burst
    sha256: str
    new: bool  # False: the class already held this exact image


def encode(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("OpenCV could not encode the frame as JPEG")
    return data.tobytes()


def burst(
    next_frame: Callable[[int, float], LiveFrame | None],
    labelling: Labelling,
    label: str,
    count: int,
    interval_s: float,
    *,
    quality: int = 90,
    timeout_s: float = 10.0,
    stop: threading.Event | None = None,
    on_kept: Callable[[Kept], None] | None = None,
    undoable: bool = False,
) -> list[Kept]:
    """Store ``count`` frames into ``label``, one per ``interval_s``; stops early when ``stop`` is set or
    no new frame arrives within ``timeout_s``. Raises ValueError for a bad class name."""
    problem = class_problem(label)
    if problem:
        raise ValueError(problem)
    stop = stop or threading.Event()
    kept: list[Kept] = []
    index, start = -1, time.monotonic()
    for number in range(1, count + 1):
        if number > 1 and stop.wait(max(0.0, start + (number - 1) * interval_s - time.monotonic())):
            break
        frame = next_frame(index, timeout_s)
        if frame is None:
            break
        index = frame.index
        sample = Sample(
            captured=frame.captured,
            reason="capture" if count == 1 else "burst",
            source=frame.origin.source,
            roi=frame.origin.roi,
            device=frame.origin.device,
            frame=frame.index,
            suggestion=frame.suggestion.topk if frame.suggestion else (),
            model=frame.suggestion.model if frame.suggestion else "",
        )
        sha, new = labelling.capture(encode(frame.image, quality), sample, label, undoable=undoable)
        kept.append(Kept(number, sha, new))
        if on_kept is not None:
            on_kept(kept[-1])
    return kept
