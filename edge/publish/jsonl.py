"""JSON lines, one per result, to stdout or to a file rotated by size (``log.jsonl`` → ``log.jsonl.1`` …).

Every line is written whole or not at all: a reader that parses the output line by line never sees half
a result, even when the daemon stops or the disk fills up.
"""

import contextlib
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
                write_whole(stream, data)
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
        try:
            self._stream.write(data)
            self._stream.flush()
        except OSError:
            self._cut_partial_line()
            raise
        self._size += len(data)

    def _cut_partial_line(self) -> None:
        """After a failed write (a full disk): truncate the file to its last whole line and reopen it later."""
        assert self._stream is not None and self._path is not None
        with contextlib.suppress(OSError):  # flushing what is buffered fails again, but the file is closed
            self._stream.close()
        self._stream = None
        try:
            os.truncate(self._path, self._size)
        except OSError as e:
            log.warning("%s: cannot cut a half-written line (%s)", self._path, e)

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


def write_whole(stream: IO[str], data: bytes) -> None:
    """Write all of ``data`` to ``stream``'s file. Over an unbuffered file (``python -u``, systemd's
    PYTHONUNBUFFERED=1) the text layer drops whatever a short write leaves, as a pipe with a slow reader
    gives when a signal interrupts a long write; here the rest follows until the line is whole."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: a stream without a file (a test's StringIO)
        stream.write(data.decode())
        stream.flush()
        return
    stream.flush()  # what went through the text layer first
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
