"""Frame sources and the capture thread that keeps only the freshest frame.

``open_source`` picks the source kind from the configured URI; ``CaptureThread`` reads it into a
``FrameMailbox``, reconnecting with exponential backoff and reporting into the ``LiveState``;
``Capture`` starts and stops the two together for the service.
"""

import glob
from pathlib import Path

import numpy as np

from edge.capture.base import Frame, Source, SourceLostError
from edge.capture.files import ImageSource, VideoFileSource
from edge.capture.mailbox import FrameMailbox, SourceEndedError
from edge.capture.opencv import CameraSource, StreamSource
from edge.capture.picamera import SCHEME as PICAMERA_SCHEME
from edge.capture.picamera import PicameraSource
from edge.capture.thread import Backoff, Capture, CaptureThread
from edge.config import SourceConfig
from edge.errors import EXIT_CONFIG, EXIT_DATA, EXIT_NO_INPUT, EXIT_UNAVAILABLE, EdgesightError
from edge.images import IMAGE_SUFFIXES, image_files, is_image_file

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")

__all__ = [
    "Backoff",
    "Capture",
    "CaptureThread",
    "Frame",
    "FrameMailbox",
    "Source",
    "SourceEndedError",
    "SourceLostError",
    "first_frame",
    "is_camera",
    "open_source",
    "v4l2_device",
]


def open_source(config: SourceConfig, model_size: tuple[int, int] = (224, 224), *, averaging: bool = False) -> Source:
    """The source the URI names, checked up front: a missing file is an error, a camera that does not
    open yet is retried later.

    ``model_size`` (width, height) is the default picamera2 lores size and, with ``shrink_at_source``
    and no ``roi`` (whose coordinates are the full frame's), what a smaller V4L2 size must cover.
    ``averaging``: the model's contract averages pixels when it shrinks a frame (area), which a JPEG
    decoder at reduced scale does too, so MJPEG streams may be decoded smaller.
    """
    uri = config.uri
    shrink = config.shrink_at_source and not config.roi
    if uri == PICAMERA_SCHEME or uri.startswith(PICAMERA_SCHEME + ":"):
        index = uri.partition(":")[2] or "0"
        if not index.isdigit():
            raise EdgesightError(f"source {uri!r}: write picamera2 or picamera2:N with a camera number", EXIT_CONFIG)
        lores = (config.lores_width, config.lores_height) if config.lores_width else model_size
        main = (config.width, config.height) if config.width else None
        return PicameraSource(
            int(index),
            lores=lores,
            buffers=config.buffers,
            fps=config.fps,
            timeout_s=config.timeout_s,
            **({"main": main} if main else {}),
        )
    if uri.isdigit() or uri.startswith("/dev/video"):
        device: int | str = int(uri) if uri.isdigit() else uri
        cover = model_size if shrink else None
        return CameraSource(device, config.width, config.height, config.fps, config.fourcc, config.timeout_s, cover)
    if uri.startswith(("http://", "https://")):
        from edge.capture.mjpeg import HttpSource  # http.client and ssl: 6 MB a daemon without a stream never needs

        return HttpSource(uri, config.timeout_s, model_size if shrink and averaging else None)
    if uri.startswith(STREAM_SCHEMES):
        return StreamSource(uri, config.timeout_s)
    path = Path(uri)
    if any(ch in uri for ch in "*?["):
        found = glob.glob(uri, recursive=True)  # noqa: PTH207 (Path.glob takes no absolute patterns)
        matches = sorted(Path(p) for p in found if is_image_file(Path(p)))
        if not matches:
            raise EdgesightError(f"source {uri}: the pattern matches no images", EXIT_NO_INPUT)
        return ImageSource(matches, config.loop, config.max_pixels)
    if path.is_dir():
        files = image_files(path)
        if not files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise EdgesightError(f"source {uri}: the folder holds no images ({suffixes})", EXIT_NO_INPUT)
        return ImageSource(files, config.loop, config.max_pixels)
    if path.is_file():
        if is_image_file(path):
            return ImageSource([path], config.loop, config.max_pixels)
        return VideoFileSource(str(path), config.loop, config.pace)
    raise EdgesightError(f"source {uri!r}: no such file, folder, camera index or stream URL", EXIT_NO_INPUT)


def v4l2_device(uri: str) -> str:
    """The device node a camera URI names (``0`` is ``/dev/video0``); empty for other sources."""
    if uri.isdigit():
        return f"/dev/video{uri}"
    return uri if uri.startswith("/dev/video") else ""


def is_camera(uri: str) -> bool:
    """A V4L2 camera or the Pi camera: a device one program opens at a time."""
    return bool(v4l2_device(uri)) or uri == PICAMERA_SCHEME or uri.startswith(PICAMERA_SCHEME + ":")


def first_frame(source: Source) -> np.ndarray:
    """Open the source, read one frame within its timeouts and close it again: proof that it works now.

    A source that cannot be opened or delivers nothing raises ``EdgesightError`` with exit code 69 (the
    daemon itself would keep retrying it); a finite source without a decodable frame, exit code 65.
    """
    try:
        source.open()
        image = source.read()
    except SourceLostError as e:
        raise EdgesightError(f"source: {e}", EXIT_UNAVAILABLE) from e
    finally:
        source.close()
    if image is None:
        raise EdgesightError(f"source {source.description}: no decodable frame in it", EXIT_DATA)
    return image
