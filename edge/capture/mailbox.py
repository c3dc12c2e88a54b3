"""The single-slot "freshest frame" mailbox between the capture thread and inference."""

import threading
import time

from edge.capture.base import Frame
from edge.errors import EdgesightError


class SourceEndedError(Exception):
    """The capture thread finished: a finite source reached its end, or the service is stopping."""


class FrameMailbox:
    """Holds at most one frame. A live producer overwrites an untaken frame (the caller counts the
    drop); a finite one waits until inference has taken it, so no frame of a file is lost."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._error: EdgesightError | None = None

    def put(self, frame: Frame, wait: bool) -> bool:
        """Deliver a frame; return True when it replaced one that was never taken."""
        with self._cond:
            while wait and self._frame is not None and not self._closed:
                self._cond.wait()
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float) -> Frame | None:
        """The newest frame, or None if none arrives within ``timeout`` seconds.

        Raises the capture thread's error, or ``SourceEndedError`` once it has closed the mailbox and the
        last frame was taken.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None:
                if self._closed:
                    if self._error is not None:
                        raise self._error
                    raise SourceEndedError
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def close(self, error: EdgesightError | None = None) -> None:
        with self._cond:
            self._closed = True
            self._error = self._error or error
            self._cond.notify_all()
