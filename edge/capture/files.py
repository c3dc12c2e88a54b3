"""Finite sources: image folders and globs, video files (optionally looped, optionally paced)."""

import logging
from pathlib import Path

import cv2
import numpy as np

from edge.capture.base import SourceLostError
from edge.errors import EXIT_DATA, EdgesightError
from edge.images import MAX_PIXELS, ImageError, ImageTooLargeError, load_image

log = logging.getLogger(__name__)


class ImageSource:
    """A folder (recursive, sorted), a glob or a single image; unreadable files, and files whose header
    declares more than ``max_pixels``, are skipped and counted."""

    live = False
    frame_interval = 0.0

    def __init__(self, paths: list[Path], loop: bool = False, max_pixels: int = MAX_PIXELS) -> None:
        self.paths = paths
        self.loop = loop
        self.max_pixels = max_pixels
        self.skipped = 0
        self.description = f"{len(paths)} images"
        self.last_path: str | None = None
        self._next = 0
        self._delivered = 0
        self._reported: set[Path] = set()

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def read(self) -> np.ndarray | None:
        while True:
            if self._next == len(self.paths):
                if not self.loop or self._delivered == 0:
                    return None
                self._next = 0
            path = self.paths[self._next]
            self._next += 1
            try:
                image = load_image(path, self.max_pixels)
            except ImageError as e:
                self.skipped += 1
                if path not in self._reported:  # one line per file, also when looping
                    self._reported.add(path)
                    hint = "; raise [source] max_pixels to classify it" if isinstance(e, ImageTooLargeError) else ""
                    log.warning("%s: %s, skipped%s", path, e, hint)
                continue
            self._delivered += 1
            self.last_path = str(path)
            return image


class VideoFileSource:
    """A video file through OpenCV's FFmpeg backend.

    Unpaced, every frame is classified (the reader waits for inference). Paced, frames arrive at the
    file's own rate like a camera's, and the ones inference cannot keep up with are dropped.
    """

    def __init__(self, path: str, loop: bool = False, pace: bool = False) -> None:
        self.path = path
        self.loop = loop
        self.live = pace
        self.frame_interval = 0.0
        self.skipped = 0
        self.description = f"video file {path}"
        self._capture: cv2.VideoCapture | None = None
        self._delivered = 0

    def open(self) -> None:
        capture = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise EdgesightError(f"source {self.path}: OpenCV cannot decode this video file", EXIT_DATA)
        fps = capture.get(cv2.CAP_PROP_FPS)
        if self.live:
            if not fps or fps <= 0 or fps > 1000:
                capture.release()
                raise EdgesightError(f"source {self.path}: the file has no frame rate to pace at; set pace = false")
            self.frame_interval = 1.0 / fps
        self._capture = capture

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise SourceLostError("not open")
        ok, image = self._capture.read()
        if ok:
            self._delivered += 1
            return image
        if self.loop and self._delivered > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
            if ok:
                return image
        return None
