"""The Raspberry Pi camera through picamera2, classifying from the small ``lores`` stream.

The ISP scales the sensor image down to the lores size in hardware, so the CPU only converts a
model-sized YUV420 image to BGR. Few buffers, because a Pi Zero 2 W has little CMA memory. picamera2
comes from apt (``python3-picamera2``); the virtualenv must be made with ``--system-site-packages``.
"""

import logging
from typing import Any

import cv2
import numpy as np

from edge.capture.base import SourceLostError
from edge.errors import EXIT_UNAVAILABLE, EdgesightError

log = logging.getLogger(__name__)

SCHEME = "picamera2"
# The ISP wants the main stream at least as large as lores; this size keeps the sensor's full field of view
# on every Pi camera module in a binned mode.
DEFAULT_MAIN = (1280, 720)


class PicameraSource:
    live = True
    frame_interval = 0.0

    def __init__(
        self,
        camera: int,
        lores: tuple[int, int],
        main: tuple[int, int] = DEFAULT_MAIN,
        buffers: int = 2,
        fps: float = 0.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.camera, self.lores, self.main = camera, lores, main
        self.buffers, self.fps, self.timeout_s = buffers, fps, timeout_s
        self.skipped = 0
        self.description = f"Pi camera {camera} (lores {lores[0]}x{lores[1]})"
        self._picam: Any = None  # a Picamera2 while open (picamera2 has no type hints)
        self._size = lores

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise EdgesightError(
                f"source picamera2: picamera2 does not import ({e}); on Raspberry Pi OS: sudo apt install"
                " python3-picamera2, and make the virtualenv with `python3 -m venv --system-site-packages`",
                EXIT_UNAVAILABLE,
            ) from e
        try:
            picam = Picamera2(self.camera)
        except (IndexError, RuntimeError) as e:
            raise SourceLostError(f"{self.description} cannot be opened ({e})") from e
        try:
            controls = {"FrameRate": self.fps} if self.fps else {}
            # Nothing reads the main stream: YUV420 halves its CMA footprint against RGB888.
            config = picam.create_video_configuration(
                main={"size": self.main, "format": "YUV420"},
                lores={"size": self.lores, "format": "YUV420"},
                buffer_count=self.buffers,
                controls=controls,
            )
            picam.align_configuration(config)
            picam.configure(config)
            self._size = tuple(config["lores"]["size"])
            picam.start()
        except RuntimeError as e:
            picam.close()
            raise SourceLostError(f"{self.description} cannot be started ({e})") from e
        if self._size != self.lores:
            log.info("%s: the ISP aligned lores to %dx%d", self.description, *self._size)
        self._picam = picam

    def close(self) -> None:
        if self._picam is not None:
            try:
                self._picam.stop()
            finally:
                self._picam.close()
                self._picam = None

    def read(self) -> np.ndarray:
        if self._picam is None:
            raise SourceLostError("not open")
        try:
            yuv = self._picam.capture_array("lores", wait=self.timeout_s)
        except (TimeoutError, RuntimeError) as e:
            raise SourceLostError(f"{self.description} delivered no frame within {self.timeout_s} s ({e})") from e
        return yuv420_to_bgr(yuv, self._size)


def yuv420_to_bgr(yuv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """picamera2's YUV420 array ((height * 3/2, stride) planar I420) as BGR of ``size`` (width, height).

    The row stride may exceed the width (alignment padding); converting the padded image and cropping
    keeps the U and V planes where I420 expects them.
    """
    width, height = size
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)[:height, :width]
