"""JSON lines, one per result, to stdout or to a file rotated by size (``log.jsonl`` → ``log.jsonl.1`` …).

Every line is written whole or not at all: a reader that parses the output line by line never sees half
a result, even when the daemon stops or the disk fills up. Lines are written in batches: at hundreds of
results a second, one write per several of them.
"""

import bisect
import itertools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, BinaryIO

from edge.publish.base import Sink
from edge.publish.settings import OutputSettings, check

log = logging.getLogger(__name__)

LINGER_S = 0.01  # after a write the next lines gather this long (a line is at most this late)


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
        """Lines written as they come, one write per batch; after a write the next lines gather for
        ``LINGER_S``, so a fast loop wakes this thread once per few results, not per result."""
        while True:
            items = self._take_all()
            if not items:
                with self._cond:
                    if self._finished():
                        return
                continue
            lines = [item.encoded + b"\n" for item in items]
            written, error = 0, ""
            try:
                if self._path is None:
                    written = self._write_stdout(lines)
                else:
                    written, error = self._write_file(lines)
            except BrokenPipeError as e:
                if self._path is None and self._stdout is None:
                    self._reader_gone()
                error = str(e)
            except (OSError, ValueError) as e:  # ValueError: e.g. a stream closed under a stuck delivery
                error = str(e)
            for n in range(len(lines)):
                self._count(n < written, error)
            time.sleep(LINGER_S)

    def _write_stdout(self, lines: list[bytes]) -> int:
        write_whole(self._stdout or sys.stdout, b"".join(lines))
        return len(lines)

    def _write_file(self, lines: list[bytes]) -> tuple[int, str]:
        """Append the lines, one write per run between rotations; return how many were written whole and the
        error that stopped the rest. A write that fails part-way (a full disk) is cut back to its last whole line."""
        done = 0
        while done < len(lines):
            if self._stream is None:
                self._open()
            if self._size and self._size + len(lines[done]) > self.settings.rotate_bytes:
                self._rotate()
            end, size = done + 1, self._size + len(lines[done])
            while end < len(lines) and size + len(lines[end]) <= self.settings.rotate_bytes:
                size, end = size + len(lines[end]), end + 1
            assert self._stream is not None
            sent, error = write_fd(self._stream.fileno(), b"".join(lines[done:end]))
            if error is not None:
                ends = list(itertools.accumulate(len(line) for line in lines[done:end]))
                whole = bisect.bisect_right(ends, sent)
                self._size += ends[whole - 1] if whole else 0
                try:
                    os.truncate(self._stream.fileno(), self._size)
                except OSError as cut:
                    log.warning("%s: cannot cut a half-written line (%s)", self._path, cut)
                return done + whole, str(error)
            self._size += sent
            done = end
        return done, ""

    def _reader_gone(self) -> None:
        """The reader of stdout went away (`edgesight run | head`): stop the daemon, as SIGPIPE would."""
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        log.info("stdout was closed by its reader; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    def _open(self) -> None:
        assert self._path is not None
        self._stream = self._path.open("ab", buffering=0)  # each write reaches the file or says how far it got
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
    _, error = write_fd(fd, data)
    if error is not None:
        raise error


def write_fd(fd: int, data: bytes) -> tuple[int, OSError | None]:
    """Write ``data`` to ``fd`` through short writes; how many bytes went out, and the error that stopped the rest."""
    view, sent = memoryview(data), 0
    try:
        while sent < len(view):
            sent += os.write(fd, view[sent:])
    except OSError as e:
        return sent, e
    return sent, None
