"""Fakes of hardware that cannot exist here, at the narrowest boundary: the Pi camera's Picamera2 class."""

from typing import Any, ClassVar

import cv2
import numpy as np


class FakePicamera2:
    """FAKE of picamera2.Picamera2 (no camera exists here): serves frames of a real video as the ISP
    would, YUV420 at the lores size with rows padded to a 64-byte stride, and records how it was used."""

    instances: ClassVar[list["FakePicamera2"]] = []
    frames: ClassVar[list[np.ndarray]] = []
    fail_after: ClassVar[int | None] = None

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config: dict[str, Any] = {}
        self.started = self.closed = False
        self.captured = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(
        self, main: dict[str, Any], lores: dict[str, Any], buffer_count: int, controls: dict[str, Any]
    ) -> dict[str, Any]:
        return {"main": dict(main), "lores": dict(lores), "buffer_count": buffer_count, "controls": controls}

    def align_configuration(self, config: dict[str, Any]) -> None:
        width, height = config["lores"]["size"]
        config["lores"]["size"] = (width + (-width % 2), height + (-height % 2))

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def capture_array(self, name: str, wait: float | None = None) -> np.ndarray:
        assert name == "lores" and self.started
        if self.fail_after is not None and self.captured >= self.fail_after:
            raise TimeoutError("fake: the camera stopped delivering")
        width, height = self.config["lores"]["size"]
        bgr = cv2.resize(self.frames[self.captured % len(self.frames)], (width, height), interpolation=cv2.INTER_AREA)
        self.captured += 1
        yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # (height * 3/2, width)
        stride = width + (-width % 64)
        padded = np.zeros((yuv.shape[0], stride), np.uint8)
        # I420 in picamera2's array: Y rows, then U and V rows of half width, two per padded row.
        padded[:height, :width] = yuv[:height]
        chroma = yuv[height:].reshape(-1, width // 2)
        padded[height:] = np.concatenate(
            [chroma.reshape(-1, 2, width // 2), np.zeros((chroma.shape[0] // 2, 2, (stride - width) // 2), np.uint8)],
            axis=2,
        ).reshape(-1, stride)
        return padded
