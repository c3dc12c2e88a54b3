"""HTTP MJPEG streams (IP cameras, mjpg-streamer, ``multipart/x-mixed-replace``) read without a backlog.

A reader thread takes the JPEGs off the socket as they come and keeps only the newest; ``read`` decodes
that one. Reading bytes is cheap and decoding is not: when the daemon is slower than the camera, frames
are passed over before they cost a decode, and the socket never fills with stale frames. (Through
OpenCV's FFmpeg backend every frame is decoded in turn, so a slow reader falls behind for good.)
A URL that answers with anything other than a multipart stream goes to ``StreamSource`` instead.

Given ``decode_to`` (the model's input size, when its contract averages pixels to shrink a frame), a
JPEG much larger than the model is decoded at 1/2, 1/4 or 1/8 scale: libjpeg scales in the DCT domain,
averaging blocks as the contract's area resize would, for a third of a full decode's CPU time.
"""

import base64
import contextlib
import http.client
import logging
import socket
import threading
import urllib.parse

import cv2
import numpy as np

from edge.capture.base import SourceLostError
from edge.capture.opencv import StreamSource, redact, tcp_reachable

log = logging.getLogger(__name__)

MULTIPART = "multipart/x-mixed-replace"
MAX_PART_BYTES = 64 << 20  # a Content-Length beyond this is a broken stream, not a frame
REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}
# A reduced frame stays at least this many times the model's input on each side, so that the contract's
# area resize still averages over every output pixel: the model's input then moves by less than JPEG
# compression itself moves it (tests/edge/test_smaller_frames.py), and most of the saving is in 1/2 anyway.
MARGIN = 2
JPEG_START = b"\xff\xd8"


class HttpSource:
    """An http(s):// URL: parsed here when it is an MJPEG stream, through FFmpeg (``StreamSource``) otherwise."""

    live = True
    frame_interval = 0.0

    def __init__(self, url: str, timeout_s: float = 5.0, decode_to: tuple[int, int] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.decode_to = decode_to  # the model's (width, height), for a reduced-scale decode; None: full decode
        self.scale = 1  # the JPEG decoder's reduction, chosen from a full-size frame
        self._full_shape: tuple[int, ...] = ()
        self.skipped = 0  # undecodable JPEGs
        self.superseded = 0  # JPEGs passed over for a newer one before the frame ``read`` last returned
        self._replaced = 0  # the reader thread's running count of the same
        self.description = f"stream {redact(url)}"
        self._ffmpeg: StreamSource | None = None
        self._socket: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._newest: bytes | None = None
        self._error: str = ""

    def reachable(self) -> bool | None:
        return tcp_reachable(self.url)

    def open(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.open()
            return
        response, sock = self._request()
        content_type = response.getheader("Content-Type", "")
        if not content_type.startswith(MULTIPART):
            response.close()
            log.info("%s is %s, not MJPEG: reading it through FFmpeg", self.description, content_type or "untyped")
            self._ffmpeg = StreamSource(self.url, self.timeout_s)
            self._ffmpeg.open()
            return
        try:
            boundary = _boundary(content_type)
        except SourceLostError:
            response.close()
            raise
        with self._cond:
            self._newest, self._error = None, ""
        self._socket = sock
        self._reader = threading.Thread(target=self._read_parts, args=(response, boundary), name="mjpeg", daemon=True)
        self._reader.start()

    def _request(self) -> tuple[http.client.HTTPResponse, socket.socket]:
        parts = urllib.parse.urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        headers = {}
        if parts.username is not None:
            credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection = kind(parts.hostname or "", parts.port, timeout=self.timeout_s)
            connection.request("GET", path, headers=headers)
            sock = connection.sock  # the response keeps using it after the connection lets it go
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise SourceLostError(f"{self.description} cannot be opened ({e})") from e
        if response.status != 200:
            response.close()
            raise SourceLostError(f"{self.description} answered HTTP {response.status} {response.reason}")
        return response, sock

    def _read_parts(self, response: http.client.HTTPResponse, boundary: bytes) -> None:
        """The reader thread: each part's JPEG replaces the one not yet decoded."""
        try:
            at_boundary = False
            while True:
                jpeg, at_boundary = _next_part(response, boundary, at_boundary)
                with self._cond:
                    if self._newest is not None:
                        self._replaced += 1
                    self._newest = jpeg
                    self._cond.notify_all()
        except (OSError, ValueError, http.client.HTTPException) as e:
            error = f"{self.description} ended or broke off ({e or type(e).__name__})"
            with self._cond:
                self._error = error
                self._cond.notify_all()
        finally:
            response.close()  # here, in the thread that reads it: http.client is not thread-safe

    def read(self) -> np.ndarray:
        if self._ffmpeg is not None:
            return self._ffmpeg.read()
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._newest is not None or self._error, self.timeout_s):
                    raise SourceLostError(f"{self.description} delivered no frame within {self.timeout_s:g} s")
                if self._newest is None:
                    raise SourceLostError(self._error)
                jpeg, self._newest = self._newest, None
                self.superseded = self._replaced
            image = self._decode(jpeg)
            if image is not None:
                return image
            self.skipped += 1

    def _decode(self, jpeg: bytes) -> np.ndarray | None:
        """The frame at the chosen reduction; in full when it is not a JPEG or its size changed."""
        data = np.frombuffer(jpeg, np.uint8)
        if self.scale > 1 and jpeg.startswith(JPEG_START):
            image = cv2.imdecode(data, REDUCED[self.scale])
            if image is not None and image.shape == _reduced(self._full_shape, self.scale):
                return image
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None or not self.decode_to:
            return image
        if image.shape != self._full_shape:  # the first frame, or the camera changed its size
            self._full_shape = image.shape
            self.scale = reduction(image.shape, self.decode_to) if jpeg.startswith(JPEG_START) else 1
            log.info("%s: %dx%d JPEGs, decoded at 1/%d", self.description, image.shape[1], image.shape[0], self.scale)
        elif self.scale > 1:  # the same size, yet the reduced decode failed: not worth trying each frame
            log.warning("%s: reduced-scale decoding failed; decoding in full from now on", self.description)
            self.scale = 1
        return image

    def close(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.close()
            return
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)  # unblocks the reader thread, which then closes up
            self._socket = None
        if self._reader is not None:
            self._reader.join(self.timeout_s)
            self._reader = None


def reduction(shape: tuple[int, ...], model: tuple[int, int]) -> int:
    """The largest JPEG decoding scale (1, 2, 4 or 8) that keeps a frame of ``shape`` at least ``MARGIN``
    times the ``model`` input (width, height) on both sides."""
    height, width = shape[:2]
    return next((k for k in REDUCED if width // k >= MARGIN * model[0] and height // k >= MARGIN * model[1]), 1)


def _reduced(shape: tuple[int, ...], scale: int) -> tuple[int, ...]:
    """The shape libjpeg gives at 1/``scale``: each side divided and rounded up."""
    return (-(-shape[0] // scale), -(-shape[1] // scale), *shape[2:])


def _boundary(content_type: str) -> bytes:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            value = value.strip('"')
            return (value if value.startswith("--") else "--" + value).encode()
    raise SourceLostError(f"an MJPEG stream without a boundary ({content_type!r})")


def _next_part(response: http.client.HTTPResponse, boundary: bytes, at_boundary: bool) -> tuple[bytes, bool]:
    """The body of the next part, by its Content-Length or else up to the next boundary, and whether that
    boundary line has been read already."""
    while not at_boundary:
        line = response.readline()
        if not line:
            raise ValueError("end of stream")
        at_boundary = line.startswith(boundary)
    length = None
    while (line := response.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise ValueError("end of stream")
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is not None:
        if not 0 < length <= MAX_PART_BYTES:
            raise ValueError(f"a part of {length} bytes")
        body = response.read(length)
        if len(body) < length:
            raise ValueError("end of stream")
        return body, False
    chunks = []
    while not (line := response.readline()).startswith(boundary):
        if not line:
            raise ValueError("end of stream")
        chunks.append(line)
    return b"".join(chunks).removesuffix(b"\r\n"), True
