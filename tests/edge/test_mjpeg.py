"""The HTTP MJPEG source: a slow reader is handed the newest frame, never a backlog of old ones."""

import io
import threading

import cv2
import numpy as np
import pytest

from edge.capture import SourceLostError, open_source
from edge.capture.mjpeg import HttpSource, _next_part
from edge.capture.opencv import StreamSource
from edge.config import SourceConfig
from tests.helpers import drain, take_all, wait_for

SLOW_INFERENCE_S = 0.5  # a reader this slow at 30 fps would fall 15 frames behind per frame through FFmpeg


def numbered_jpegs(count: int) -> list[bytes]:
    frames = []
    for i in range(count):
        image = np.full((60, 80, 3), i * 255 // count, np.uint8)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes())
    return frames


def frame_number(image: np.ndarray, count: int) -> int:
    """Which of ``numbered_jpegs(count)`` a decoded frame is."""
    levels = np.arange(count) * 255 // count
    return int(np.abs(levels - image.mean()).argmin())


def test_http_mjpeg_url_gets_the_backlog_free_source(mjpeg_server):
    server = mjpeg_server(numbered_jpegs(4), fps=30)
    source = open_source(SourceConfig(uri=server.url, timeout_s=2))
    assert isinstance(source, HttpSource) and source.live
    assert source.description == f"stream {server.url}"


def test_slow_reader_gets_the_newest_frame_and_counts_those_passed_over(mjpeg_server):
    count = 12
    server = mjpeg_server(numbered_jpegs(count), fps=30, repeat=False)
    source = HttpSource(server.url, timeout_s=1)
    source.open()
    try:
        assert source.read().shape == (60, 80, 3)
        wait_for(lambda: server.sent == count, what="the camera to send its frames")
        threading.Event().wait(SLOW_INFERENCE_S)  # stands for a slow inference, not for synchronization
        newest = source.read()
        assert frame_number(newest, count) == count - 1  # the last frame sent, not the next in a backlog
        assert source.superseded == count - 2  # all but the two returned were passed over, never decoded
        with pytest.raises(SourceLostError):
            source.read()  # nothing else was kept: the stream has been silent since
    finally:
        source.close()


def test_parts_without_content_length_are_read_up_to_the_next_boundary():
    jpeg = numbered_jpegs(1)[0]
    stream = io.BytesIO(
        b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n--frame\r\nContent-Length: 3\r\n\r\nabc\r\n"
    )
    first, at_boundary = _next_part(stream, b"--frame", False)  # type: ignore[arg-type]
    assert first == jpeg and at_boundary
    assert _next_part(stream, b"--frame", at_boundary) == (b"abc", False)  # type: ignore[arg-type]


def test_a_url_that_is_not_mjpeg_goes_through_ffmpeg(tmp_path):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = HttpSource(f"http://127.0.0.1:{server.server_address[1]}/clip.mp4", timeout_s=2)
    try:
        with pytest.raises(SourceLostError, match="cannot be opened"):
            source.open()  # FFmpeg is handed the URL, and refuses the empty clip
        assert isinstance(source._ffmpeg, StreamSource)
    finally:
        source.close()
        server.shutdown()
        server.server_close()


class PassingOverSource:
    """Three frames, with two passed over before each (as HttpSource counts them)."""

    live, frame_interval, skipped, description = False, 0.0, 0, "passing over"

    def __init__(self) -> None:
        self.superseded, self._left = 0, 3

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def read(self) -> np.ndarray | None:
        if not self._left:
            return None
        self._left -= 1
        self.superseded += 2
        return np.zeros((4, 4, 3), np.uint8)


def test_frames_passed_over_keep_their_place_in_the_sequence_and_count_as_dropped():
    mailbox, health, thread, _ = drain(PassingOverSource())
    frames = take_all(mailbox)
    thread.join(10)
    assert [frame.index for frame in frames] == [2, 5, 8]
    snapshot = health.snapshot()
    assert (snapshot.frames_captured, snapshot.frames_dropped) == (9, 6)
