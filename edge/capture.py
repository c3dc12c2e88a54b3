"""Frame sources: video files, image folders and globs, V4L2/USB cameras and network streams.

Every source is a context manager whose ``frames()`` yields ``Frame``s stamped at capture time.
"""

import glob
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EXIT_NO_INPUT, EdgesightError
from edge.images import IMAGE_SUFFIXES, image_files, is_image_file, read_image

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8, as OpenCV decodes
    index: int
    ts: float  # wall-clock capture time, seconds since the epoch
    captured: float  # time.monotonic() at capture, for ages and rates


def _stamp(image: np.ndarray, index: int) -> Frame:
    return Frame(image=image, index=index, ts=time.time(), captured=time.monotonic())


class ImageSource:
    """A folder (recursive, sorted), a glob or a single image; unreadable files are skipped and counted."""

    def __init__(self, paths: list[Path], loop: bool = False) -> None:
        self.paths = paths
        self.loop = loop
        self.skipped = 0
        self.description = f"{len(paths)} images"

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            for path in self.paths:
                image = read_image(path)
                if image is None:
                    self.skipped += 1
                    log.warning("%s: not a decodable image, skipped", path)
                    continue
                yield _stamp(image, index)
                index += 1
            if not self.loop or index == 0:
                return


class VideoSource:
    """Anything OpenCV's VideoCapture opens: a file, a camera index or /dev/videoN, an RTSP/HTTP URL."""

    def __init__(self, target: str | int, loop: bool = False) -> None:
        self.target = target
        self.is_file = isinstance(target, str) and not target.startswith(STREAM_SCHEMES) and Path(target).is_file()
        self.loop = loop and self.is_file
        self.description = str(target)
        self.skipped = 0
        self._capture: cv2.VideoCapture | None = None

    def __enter__(self) -> "VideoSource":
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            raise EdgesightError(f"source {self.target}: cannot be opened by OpenCV", EXIT_NO_INPUT)
        self._capture = capture
        return self

    def __exit__(self, *exc: object) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def frames(self) -> Iterator[Frame]:
        assert self._capture is not None, "use the source as a context manager"
        index = 0
        while True:
            ok, image = self._capture.read()
            if ok:
                yield _stamp(image, index)
                index += 1
                continue
            if self.loop and index > 0:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            return


Source = ImageSource | VideoSource


def open_source(uri: str, loop: bool = False) -> Source:
    """Pick the source kind from the URI: camera index, device, stream URL, image folder/glob/file, video."""
    if uri.isdigit():
        return VideoSource(int(uri))
    if uri.startswith("/dev/video") or uri.startswith(STREAM_SCHEMES):
        return VideoSource(uri)
    path = Path(uri)
    if any(ch in uri for ch in "*?["):
        found = glob.glob(uri, recursive=True)  # noqa: PTH207 (Path.glob takes no absolute patterns)
        matches = sorted(Path(p) for p in found if is_image_file(Path(p)))
        if not matches:
            raise EdgesightError(f"source {uri}: the pattern matches no images", EXIT_NO_INPUT)
        return ImageSource(matches, loop)
    if path.is_dir():
        files = image_files(path)
        if not files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise EdgesightError(f"source {uri}: the folder holds no images ({suffixes})", EXIT_NO_INPUT)
        return ImageSource(files, loop)
    if path.is_file():
        return ImageSource([path], loop) if is_image_file(path) else VideoSource(str(path), loop)
    raise EdgesightError(f"source {uri!r}: no such file, folder, camera index or stream URL", EXIT_NO_INPUT)
