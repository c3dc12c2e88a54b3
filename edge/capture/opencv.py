"""Live sources through OpenCV: V4L2/USB cameras and network streams (RTSP, HTTP MJPEG) via FFmpeg."""

import logging
import os
import socket
import urllib.parse
from pathlib import Path

import cv2
import numpy as np

from edge.capture.base import SourceLostError

log = logging.getLogger(__name__)


class _Capture:
    """What a camera and a stream share: one cv2.VideoCapture, released on close, read with a timeout."""

    live = True
    frame_interval = 0.0
    description: str
    timeout_ms: int
    _capture: cv2.VideoCapture | None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def read(self) -> np.ndarray:
        if self._capture is None:
            raise SourceLostError("not open")
        ok, image = self._capture.read()
        if not ok:
            raise SourceLostError(f"{self.description} ended or delivered no frame within {self.timeout_ms} ms")
        return image


class CameraSource(_Capture):
    """A V4L2 camera by index or /dev/videoN, with the requested size, rate and pixel format.

    With no size requested and ``cover`` given (the model's input), the camera is asked for its default
    size halved as often as the result still covers ``cover``: fewer pixels to move and convert, and the
    same aspect ratio, so the same field of view. A camera that does not offer that size keeps its default.
    """

    def __init__(
        self,
        device: int | str,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        fourcc: str = "",
        timeout_s: float = 5.0,
        cover: tuple[int, int] | None = None,
    ) -> None:
        self.device = device
        self.width, self.height, self.fps, self.fourcc, self.cover = width, height, fps, fourcc, cover
        self.timeout_ms = int(timeout_s * 1000)
        self.skipped = 0
        self.description = f"camera {device}"
        self.node = f"/dev/video{device}" if isinstance(device, int) else device
        self._capture: cv2.VideoCapture | None = None

    def reachable(self) -> bool:
        """The device node exists and this user may open it. It vanishes while a USB camera is unplugged,
        and comes back owned by root until udev hands it to group video a moment later: the camera is
        back only then, and an attempt in between would leave the next one to the backoff."""
        return os.access(self.node, os.R_OK | os.W_OK)

    def open(self) -> None:
        if not Path(self.node).exists():
            raise SourceLostError(f"{self.description} is not there ({self.node} is missing: unplugged?)")
        capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise SourceLostError(f"{self.description} cannot be opened (unplugged, or in use by another program?)")
        # The pixel format goes first: many UVC cameras offer their higher sizes and rates only as MJPG.
        if self.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
        if self.width and self.height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        elif self.cover:
            self._size_near(capture, self.cover)
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver queue adds latency; we keep the freshest frame
        capture.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms)
        got = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        log.info("%s: %dx%d at %.1f fps", self.description, got[0], got[1], capture.get(cv2.CAP_PROP_FPS))
        if self.width and self.height and got != (self.width, self.height):
            log.warning("%s: asked for %dx%d, the camera gives %dx%d", self.description, self.width, self.height, *got)
        self._capture = capture

    def _size_near(self, capture: cv2.VideoCapture, cover: tuple[int, int]) -> None:
        """The smallest halving of the default size that covers ``cover`` and that the camera gives exactly."""
        default = width, height = _size(capture)
        halvings = []
        while width % 2 == 0 and height % 2 == 0 and width // 2 >= cover[0] and height // 2 >= cover[1]:
            width, height = width // 2, height // 2
            halvings.append((width, height))
        for size in reversed(halvings):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            if _size(capture) == size:
                log.info("%s: %dx%d, the smallest halving of its %dx%d that covers the model", self.description,
                         *size, *default)  # fmt: skip
                return
        if halvings:  # a driver sets the nearest size it has: back to the default
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, default[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, default[1])


def _size(capture: cv2.VideoCapture) -> tuple[int, int]:
    return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))


class StreamSource(_Capture):
    """An RTSP or HTTP (MJPEG) URL through OpenCV's FFmpeg backend, with open and read timeouts."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_ms = int(timeout_s * 1000)
        self.skipped = 0
        self.description = f"stream {redact(url)}"
        self._capture: cv2.VideoCapture | None = None

    def reachable(self) -> bool | None:
        return tcp_reachable(self.url)

    def open(self) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        capture = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise SourceLostError(f"{self.description} cannot be opened")
        self._capture = capture


# Ports of the stream schemes that go over TCP; udp:// has no connection to try.
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}
PROBE_TIMEOUT_S = 0.5


def tcp_reachable(url: str) -> bool | None:
    """Whether the URL's host accepts a TCP connection: a cheap sign that a stream may be back.
    None when the URL has no TCP port to try."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port out of range: let the real open say so
        return None
    if not parts.hostname or port is None:
        return None
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def redact(url: str) -> str:
    """The URL without its password, for logs and health."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        credentials, host = rest.split("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url
