"""JSON lines, one per result, to stdout or to a file rotated by size (``log.jsonl`` → ``log.jsonl.1`` …)."""

import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO, BinaryIO

from edge.publish.base import Sink
from edge.publish.settings import OutputSettings, check
from edge.result import Result

log = logging.getLogger(__name__)


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

    def _deliver(self, item: Result) -> None:
        data = item.encoded + b"\n"
        if self._path is None:
            stream = self._stdout or sys.stdout
            try:
                stream.write(data.decode())
                stream.flush()
            except BrokenPipeError:
                if self._stdout is not None:
                    raise
                self._reader_gone()
            return
        if self._stream is None:
            self._open()
        if self._size and self._size + len(data) > self.settings.rotate_bytes:
            self._rotate()
        assert self._stream is not None
        self._stream.write(data)
        self._stream.flush()
        self._size += len(data)

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
