"""JSON lines, one per result, to stdout or to a file rotated by size (``log.jsonl`` → ``log.jsonl.1`` …)."""

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, BinaryIO

from edge.publish.base import Sink
from edge.publish.settings import OutputSettings, check
from edge.result import Result

log = logging.getLogger(__name__)

LINGER_S = 0.01  # at hundreds of results a second, one write per several of them (a line is at most this late)


class JsonlSink(Sink):
    """Writes each submitted result as one compact JSON line; a failing write is counted, not raised."""

    def __init__(self, settings: OutputSettings, stream: IO[str] | None = None) -> None:
        check(settings, "output")
        super().__init__("jsonl", settings.queue_size)
        self.settings = settings
        self._stdout = stream
        self._stream: BinaryIO | None = None
        self._size = 0
        self._path = None if settings.jsonl == "-" else Path(settings.jsonl)

    def _work(self) -> None:
        """Lines written as they come, flushed once per batch; after a flush the next lines gather for
        ``LINGER_S``, so a fast loop wakes this thread and writes once per few results, not per result."""
        while True:
            items = self._take_all()
            if not items:
                with self._cond:
                    if self._finished():
                        return
                continue
            try:
                for item in items:
                    self._write(item.encoded + b"\n")
                self._flush()
            except BrokenPipeError as e:
                if self._path is None and self._stdout is None:
                    self._reader_gone()
                self._count_all(items, False, str(e))
            except (OSError, ValueError) as e:  # ValueError: e.g. a stream closed under a stuck delivery
                self._count_all(items, False, str(e))
            else:
                self._count_all(items, True)
            time.sleep(LINGER_S)

    def _count_all(self, items: list[Result], ok: bool, detail: str = "") -> None:
        for _ in items:
            self._count(ok, detail)

    def _write(self, data: bytes) -> None:
        if self._path is None:
            (self._stdout or sys.stdout).write(data.decode())
            return
        if self._stream is None:
            self._open()
        if self._size and self._size + len(data) > self.settings.rotate_bytes:
            self._rotate()
        assert self._stream is not None
        self._stream.write(data)
        self._size += len(data)

    def _flush(self) -> None:
        stream = (self._stdout or sys.stdout) if self._path is None else self._stream
        assert stream is not None
        stream.flush()

    def _reader_gone(self) -> None:
        """The reader of stdout went away (`edgesight run | head`): stop the daemon, as SIGPIPE would."""
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        log.info("stdout was closed by its reader; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    def _open(self) -> None:
        assert self._path is not None
        self._stream = self._path.open("ab")
        self._size = self._stream.tell()

    def _rotate(self) -> None:
        """Shift ``file.N-1`` → ``file.N`` down to ``file`` → ``file.1``, dropping the oldest, and reopen."""
        assert self._stream is not None and self._path is not None
        self._stream.close()
        self._stream = None
        for n in range(self.settings.keep, 0, -1):
            older = self._path.with_name(f"{self._path.name}.{n}")
            newer = self._path if n == 1 else self._path.with_name(f"{self._path.name}.{n - 1}")
            if newer.exists():
                newer.replace(older)
        self._open()
        log.info("%s: rotated (%d kept)", self._path, self.settings.keep)

    def _closed(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError as e:
                log.warning("%s: closing failed: %s", self._path, e)
            self._stream = None
