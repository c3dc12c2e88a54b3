"""The capture thread: reads a source into the mailbox, paces files, reconnects with backoff; and
``Capture``, the thread and its mailbox as the service starts and stops them."""

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.capture.base import Frame, Source, SourceLostError, reachability, stamp
from edge.capture.mailbox import FrameMailbox
from edge.errors import EXIT_SOFTWARE, EdgesightError
from edge.preprocess import halve
from edge.state import LiveState

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0  # a capture thread stuck in a driver call is abandoned (it is a daemon thread)
# While the backoff waits, a source that can tell cheaply whether it is back is asked this often, so a
# camera or stream that returns is used within about a second, however long the backoff has grown.
PROBE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Backoff:
    first_s: float = 0.5
    max_s: float = 30.0

    def delays(self) -> Iterator[float]:
        """0.5, 1, 2, 4 ... seconds, capped."""
        delay = self.first_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


class CaptureThread(threading.Thread):
    """Owns the source: opens it, reads it and closes it, all in this one thread."""

    def __init__(
        self,
        source: Source,
        mailbox: FrameMailbox,
        state: LiveState,
        stop: threading.Event,
        backoff: Backoff,
        halve_to: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.source, self.mailbox, self.state, self.stop, self.backoff = source, mailbox, state, stop, backoff
        self.halve_to = halve_to
        self._index = 0
        self._frames_since_open = 0
        self._superseded = 0
        self._skipped = 0  # the source's skipped count already reported
        self._ended = False
        state.set_source(source.description)

    def run(self) -> None:
        try:
            self._run()
            if not self._ended:
                self.state.set_source_state("stopped")
        except EdgesightError as e:
            self.state.set_source_state("failed", str(e))
            self.mailbox.close(e)
        except Exception as e:
            log.exception("capture thread failed")
            self.state.set_source_state("failed", repr(e))
            self.mailbox.close(EdgesightError(f"capture failed: {e!r}; please report it", EXIT_SOFTWARE))
        finally:
            self.state.on_capture(0.0, captured=0, skipped=self._newly_skipped())
            self.mailbox.close()

    def _newly_skipped(self) -> int:
        skipped, self._skipped = self.source.skipped - self._skipped, self.source.skipped
        return skipped

    def _run(self) -> None:
        delays = self.backoff.delays()
        first_attempt = True
        while not self.stop.is_set():
            if not first_attempt:
                self.state.on_reconnect()
            first_attempt = False
            self._frames_since_open = 0
            lost: SourceLostError | None = None
            try:
                self.source.open()
                self.state.set_source_state("open")
                log.info("reading %s", self.source.description)
                ended = self._read_until_end()
            except SourceLostError as e:
                lost = e
            finally:
                self.source.close()  # before waiting: a camera is free for others meanwhile
            if lost is not None:
                if self._frames_since_open:
                    delays = self.backoff.delays()  # it worked for a while: start the backoff afresh
                if self._wait_after(lost, delays):
                    return
                continue
            if ended:
                self._ended = True
                self.state.set_source_state("ended")
            return

    def _wait_after(self, error: SourceLostError, delays: Iterator[float]) -> bool:
        """Record the failure and wait the next backoff delay, cut short when the source becomes reachable
        again; True when stopping meanwhile."""
        delay = next(delays)
        self.state.set_source_state("reconnecting", str(error))
        log.warning("%s; retrying in %.1f s", error, delay)
        # Only a return counts: a source reachable although it failed (a busy device, an HTTP error, a
        # listener not yet closed) must go unreachable first, or only the backoff can help.
        was_reachable = reachability(self.source)
        if was_reachable is None:
            return self.stop.wait(delay)
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(PROBE_INTERVAL_S, remaining)):
                return True
            reachable = reachability(self.source)
            if reachable and not was_reachable:
                log.info("%s answers again: reopening it now", self.source.description)
                return False
            was_reachable = reachable
        return False

    def _read_until_end(self) -> bool:
        """Read frames into the mailbox; True at the end of a finite source, False when stopped."""
        source = self.source
        started = time.monotonic()
        while not self.stop.is_set():
            image = source.read()
            if image is None:
                return True
            if self.halve_to and image.dtype == np.uint8:  # while the frame is still in this core's cache
                image = halve(image, *self.halve_to)
            # Frames a source passed over before decoding them (HttpSource) keep their place in the
            # sequence and count as captured and dropped.
            superseded = getattr(source, "superseded", 0)
            passed_over, self._superseded = superseded - self._superseded, superseded
            self._index += passed_over
            frame = stamp(image, self._index, getattr(source, "last_path", None))
            self._index += 1
            self._frames_since_open += 1
            dropped = self.mailbox.put(frame, wait=not source.live)
            self.state.on_capture(
                frame.ts, captured=1 + passed_over, dropped=int(dropped) + passed_over, skipped=self._newly_skipped()
            )
            if source.frame_interval:
                due = started + self._frames_since_open * source.frame_interval
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return False
        return False


class Capture:
    """A source's capture thread and the mailbox it fills, started and stopped together."""

    def __init__(
        self, source: Source, state: LiveState, backoff: Backoff, halve_to: tuple[int, int] | None = None
    ) -> None:
        """``halve_to``: each frame goes through ``edge.preprocess.halve`` to this size in the capture thread
        (the first step of the model's resize, done where the decoded frame is still in cache)."""
        self.source = source
        self.mailbox = FrameMailbox()
        self._stop = threading.Event()  # its own: it ends when the loop ends, by signal, end, error or reload
        self.thread = CaptureThread(source, self.mailbox, state, self._stop, backoff, halve_to)
        self.thread.start()

    def take(self, timeout: float) -> Frame | None:
        return self.mailbox.take(timeout)

    def close(self) -> None:
        self._stop.set()
        self.mailbox.close()
        self.thread.join(JOIN_TIMEOUT_S)
        if self.thread.is_alive():
            log.warning("the capture thread did not stop within %.0f s; leaving it behind", JOIN_TIMEOUT_S)
