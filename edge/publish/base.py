"""The sink interface: a bounded queue and a worker thread, so a slow or dead sink never slows inference.

``submit`` only appends to a deque: when it is full the oldest item is dropped and counted. The worker
delivers items in order; failures are counted and logged once per episode, never raised at the caller.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edge.result import Result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkCounters:
    """What became of the items a sink was given: ``submitted = delivered + failed + dropped + queued``."""

    submitted: int
    delivered: int
    dropped: int  # pushed out of the full queue, or left in it at close
    failed: int  # handed to the destination, which refused them
    queued: int
    connected: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Sink:
    """Base of every publisher: ``start()``, ``submit(result)`` (never blocks), ``close(timeout)``.

    Subclasses implement ``_deliver(item)`` (raise ``OSError`` on failure) or override ``_work`` for
    destinations that come and go (MQTT).
    """

    def __init__(self, name: str, queue_size: int) -> None:
        self.name = name
        self._queue: deque[Any] = deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._submitted = self._delivered = self._dropped = self._failed = 0
        self._close_deadline = 0.0
        self._woken = False
        self._dropping = False  # inside an episode of drops, logged at its start and end
        self._failing = False

    # The caller's side.

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, result: Result) -> None:
        """Queue a result for delivery; when the queue is full the oldest item is dropped and counted."""
        self._put(result)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop; what is left is counted as dropped.

        A delivery stuck past the timeout is abandoned to its daemon thread and still counted when it ends.
        """
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self._dropped += left
        if left:
            log.warning("%s: %d queued items not delivered before close", self.name, left)
        self._closed()

    def counters(self) -> SinkCounters:
        with self._cond:
            return SinkCounters(
                submitted=self._submitted,
                delivered=self._delivered,
                dropped=self._dropped,
                failed=self._failed,
                queued=len(self._queue),
                connected=self.connected,
            )

    @property
    def connected(self) -> bool:
        """Whether the destination currently accepts items; sinks that cannot tell always say True."""
        return True

    # The worker's side.

    def _put(self, item: Any) -> None:
        with self._cond:
            self._submitted += 1
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self._dropped += 1
                if not self._dropping:
                    self._dropping = True
                    log.warning("%s: queue full (%d), dropping the oldest items", self.name, self._queue_size)
            elif self._dropping and len(self._queue) < self._queue_size // 2:
                self._dropping = False
                log.info("%s: queue below half again; %d items dropped so far", self.name, self._dropped)
            self._queue.append(item)
            self._cond.notify_all()

    def _finished(self) -> bool:
        """Closing, and nothing is left to deliver or the close deadline has passed (hold ``_cond``)."""
        return self._closing and (not self._queue or time.monotonic() >= self._close_deadline)

    def _wake(self) -> None:
        """Make a waiting ``_take`` return None now, so the worker attends to other duties."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _take(self, ready: Callable[[], bool] = lambda: True, timeout: float | None = None) -> Any | None:
        """The next item once ``ready()``; None when finished, woken, or after ``timeout`` seconds."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._finished() or self._woken:
                    self._woken = False
                    return None
                if self._queue and ready():
                    return self._queue.popleft()
                waits = [
                    t - time.monotonic()
                    for t in (deadline, self._close_deadline if self._closing else None)
                    if t is not None
                ]
                wait = min(waits) if waits else None
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)

    def _take_all(self) -> list[Any]:
        """Everything queued once there is something (``_take``'s waiting); empty when finished or woken."""
        first = self._take()
        if first is None:
            return []
        with self._cond:
            items = [first, *self._queue]
            self._queue.clear()
        return items

    def _requeue(self, item: Any) -> None:
        """Put an item that could not be handed over back at the front, keeping the order."""
        with self._cond:
            self._queue.appendleft(item)
            if len(self._queue) > self._queue_size:
                self._queue.pop()
                self._dropped += 1

    def _count(self, ok: bool, detail: str = "") -> None:
        with self._cond:
            if ok:
                self._delivered += 1
            else:
                self._failed += 1
            changed, self._failing = self._failing == ok, not ok
        if changed and not ok:
            log.warning("%s: delivery failing: %s", self.name, detail)
        elif changed:
            log.info("%s: delivering again (%d failed so far)", self.name, self._failed)

    def _work(self) -> None:
        while True:
            item = self._take()
            if item is None:
                with self._cond:
                    if self._finished():
                        return
                continue
            try:
                self._deliver(item)
            except (OSError, ValueError) as e:  # ValueError: e.g. a stream closed under a stuck delivery
                self._count(False, str(e))
            else:
                self._count(True)

    def _deliver(self, item: Any) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        """Release the destination after the worker stopped."""
