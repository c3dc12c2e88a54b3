"""The libraries' own log lines (TensorFlow, LiteRT, OpenCV, FFmpeg): off unless ``--log-level debug``.

Most of them are native code writing to file descriptor 2, past Python's logging. Where a library reads
an environment variable, it is set before the library starts (``quiet``); the rest print at known moments
(TensorFlow's import, a converter run, an interpreter's first delegate), which ``native_stderr_filtered``
wraps: fd 2 goes to a file for the duration, and what is not known noise is written back afterwards, so a
message of ours from another thread, or a real error, is delayed but never lost.
"""

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

# Read by the libraries when they start: defaults only, so a variable the user set wins.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ lines once its logging runs (the cuInit error on CPUs)
    "OPENCV_LOG_LEVEL": "ERROR",  # "[ WARN:0@...] global cap.cpp ..." on every failed open
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg's AV_LOG_QUIET: "[tcp @ 0x...] Connection refused" per retry
}
# Python loggers of libraries that report their routine at INFO ("Assets written to ...").
QUIET_LOGGERS = ("tensorflow", "absl")
# Modules whose import prints native start-up lines before their logging honours TF_CPP_MIN_LOG_LEVEL.
QUIET_IMPORTS = ("tensorflow",)
# What the wrapped moments print, line by line.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "  # absl's own format: oneDNN, CUDA stubs, CPU features
    r"|To enable the following instructions: "  # the CPU-features line's continuation
    r"|INFO: (Created|Initialized) TensorFlow Lite"  # LiteRT's first interpreter: XNNPACK delegate
    r"|fully_quantize: \d+, inference_type: )"  # the TFLite converter's summary
)

_quiet = False
_lock = threading.RLock()  # one redirection of fd 2 at a time


def quiet(level: str) -> None:
    """Silence the libraries unless ``level`` is debug; call before they are imported or started."""
    global _quiet
    _quiet = level != "debug"
    if not _quiet:
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # OpenCV reads its variable once, at its first message: a cv2 already imported may have read it.
    opencv_logging: Any = getattr(getattr(sys.modules.get("cv2"), "utils", None), "logging", None)
    if hasattr(opencv_logging, "setLogLevel") and os.environ["OPENCV_LOG_LEVEL"] == "ERROR":
        opencv_logging.setLogLevel(opencv_logging.LOG_LEVEL_ERROR)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    missing = [name for name in QUIET_IMPORTS if name not in sys.modules]
    if missing and not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport(missing))


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Hold back what is written to fd 2 in the block and write it back without the known noise."""
    if not _quiet:
        yield
        return
    with _lock, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not NOISE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first import of each of ``names`` inside ``native_stderr_filtered``."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        self.names.discard(fullname)  # from here on the other finders answer, this one included
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            loader, exec_module = spec.loader, spec.loader.exec_module

            def exec_quietly(module: ModuleType) -> None:
                with native_stderr_filtered():
                    exec_module(module)

            loader.exec_module = exec_quietly  # type: ignore[method-assign]
        return spec
