"""The benchmark's inputs: synthetic videos (cached under ``build/bench/media``) and a live MJPEG
stream on 127.0.0.1 that emits frames at a fixed rate whether or not its client keeps up."""

import http.server
import logging
import queue
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

SIZES = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30
VIDEO_VERSION = 1  # bump when the content below changes, so cached videos are rebuilt
FOURCC = "mp4v"  # the MPEG-4 encoder OpenCV's wheels ship; H.264 would cost more to decode


def frame(size: tuple[int, int], index: int) -> np.ndarray:
    """A frame with texture, edges and motion, so that resizing and encoding do real work."""
    width, height = size
    rng = np.random.default_rng(index % 7)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    x = int((index * 7) % width)
    cv2.circle(image, (x, height // 2), height // 5, (40, 200, 90), -1)
    cv2.putText(image, str(index), (width // 10, height // 4), cv2.FONT_HERSHEY_SIMPLEX, height / 200, (255,) * 3, 3)
    return image


def video(build: Path, name: str, frames: int) -> Path:
    """An mp4 of ``frames`` frames at ``SIZES[name]`` and 30 fps, written once."""
    path = build / "media" / f"{name}-{frames}-v{VIDEO_VERSION}.mp4"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*FOURCC), FPS, SIZES[name])
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video here")
    for i in range(frames):
        writer.write(frame(SIZES[name], i))
    writer.release()
    partial.replace(path)
    return path


class MjpegStream:
    """An HTTP multipart MJPEG stream like an IP camera's, at ``fps`` frames per second.

    Frames are produced on the clock into each client's queue whatever the client does, as a camera
    does; a slow client gets them late, which is what "a buffered stream" means. ``produced[i]`` is
    the ``time.monotonic()`` at which frame ``i`` (counted per client, from 0) was produced.
    """

    def __init__(self, size: tuple[int, int], fps: float = FPS, distinct: int = 30) -> None:
        self.fps = fps
        self.jpegs = [
            cv2.imencode(".jpg", frame(size, i), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for i in range(distinct)
        ]
        self.produced: list[float] = []
        self._stop = threading.Event()
        stream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stream.serve(self)

            def log_message(self, *args: object) -> None:
                return None

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-server", daemon=True)

    def __enter__(self) -> "MjpegStream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        """Serve one client: a producer thread on the clock, this thread writing its queue out."""
        self.produced = []
        frames: queue.Queue[int | None] = queue.Queue()
        stopped = threading.Event()

        def produce() -> None:
            started = time.monotonic()
            i = 0
            while not (self._stop.is_set() or stopped.is_set()):
                self.produced.append(time.monotonic())
                frames.put(i)
                i += 1
                self._stop.wait(max(0.0, started + i / self.fps - time.monotonic()))
            frames.put(None)

        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        threading.Thread(target=produce, name="mjpeg-clock", daemon=True).start()
        try:
            while (i := frames.get()) is not None:
                jpeg = self.jpegs[i % len(self.jpegs)]
                handler.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
                )
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stopped.set()
