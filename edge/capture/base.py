"""What every frame source shares: the frame it yields, the failure that means "reconnect", its interface."""

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8, as OpenCV decodes
    index: int  # position in the capture sequence, counted across reconnects
    ts: float  # wall-clock capture time, seconds since the epoch
    captured: float  # time.monotonic() at capture, for ages and rates
    path: str | None = None  # the image file it was read from, for folder and glob sources


def stamp(image: np.ndarray, index: int, path: str | None = None) -> Frame:
    return Frame(image=image, index=index, ts=time.time(), captured=time.monotonic(), path=path)


class SourceLostError(Exception):
    """A source failed to open or to deliver a frame in time: close it, wait, open it again."""


class Source(Protocol):
    """A frame source. ``open`` and ``read`` raise ``SourceLostError`` for what a retry can cure and
    ``EdgesightError`` for what it cannot (a bad config, a missing library).

    Sources of image files also set ``last_path``, the file of the frame ``read`` returned last.
    """

    description: str
    live: bool  # frames arrive in real time: stale ones are dropped, never waited for
    frame_interval: float  # seconds between frames when paced at the source's own rate, else 0
    skipped: int  # undecodable items passed over

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None when a finite source has ended."""
        ...

    def close(self) -> None: ...


def reachability(source: Source) -> bool | None:
    """A source's cheap sign of life between reopen attempts (a device node, a TCP connect), if it has one:
    True or False, or None when it cannot tell without a full open."""
    probe = getattr(source, "reachable", None)
    return None if probe is None else probe()
