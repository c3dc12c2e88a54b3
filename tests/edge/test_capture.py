"""Capture sources against real parts: a real video clip, image folders, an MJPEG server on 127.0.0.1,
and picamera2 through a fake of its Picamera2 class (the only part that cannot exist here)."""

import itertools
import socket
import sys
import threading
import time
import types
from typing import ClassVar

import cv2
import numpy as np
import pytest

from edge.capture import CaptureThread, FrameMailbox, SourceEndedError, open_source
from edge.capture.picamera import PicameraSource
from edge.capture.thread import Backoff
from edge.config import SourceConfig
from edge.errors import EXIT_NO_INPUT, EXIT_UNAVAILABLE, EdgesightError
from edge.health import Health
from tests.conftest import wait_for
from tests.helpers import blank_png

QUICK_RETRY = Backoff(0.05, 0.2)


def drain(source, stop: threading.Event | None = None, backoff: Backoff = QUICK_RETRY):
    """Run a capture thread over ``source``; return the mailbox, the health and the thread."""
    stop = stop or threading.Event()
    mailbox, health = FrameMailbox(), Health()
    thread = CaptureThread(source, mailbox, health, stop, backoff)
    thread.start()
    return mailbox, health, thread, stop


def take_all(mailbox: FrameMailbox, limit: int = 10_000) -> list:
    frames = []
    while len(frames) < limit:
        try:
            frame = mailbox.take(timeout=10)
        except SourceEndedError:
            break
        assert frame is not None, "no frame within 10 s"
        frames.append(frame)
    return frames


def test_video_file_delivers_every_frame_in_order_with_timestamps(car_video):
    mailbox, health, thread, _ = drain(open_source(SourceConfig(uri=str(car_video))))
    frames = take_all(mailbox)
    thread.join(10)
    assert [f.index for f in frames] == list(range(377))
    assert frames[0].image.shape == (432, 768, 3)
    assert all(b.captured >= a.captured for a, b in itertools.pairwise(frames))
    snapshot = health.snapshot()
    assert snapshot.frames_captured == 377 and snapshot.frames_dropped == 0
    assert snapshot.source_state == "ended"


def test_looped_video_file_restarts_at_its_end(car_video):
    mailbox, _health, thread, stop = drain(open_source(SourceConfig(uri=str(car_video), loop=True)))
    frames = take_all(mailbox, limit=400)
    stop.set()
    mailbox.close()
    thread.join(10)
    assert len(frames) == 400 and frames[-1].index == 399
    assert np.array_equal(frames[377].image, frames[0].image)  # frame 377 is the clip's first again


def test_paced_video_drops_stale_frames_and_frame_age_stays_bounded(car_video):
    """A source faster than inference: the consumer always gets the newest frame, never a backlog."""
    mailbox, health, thread, stop = drain(open_source(SourceConfig(uri=str(car_video), pace=True, loop=True)))
    ages, indices = [], []
    slow_inference = threading.Event()  # never set: wait() stands in for a model slower than the camera
    for _ in range(10):
        frame = mailbox.take(timeout=10)
        assert frame is not None
        ages.append((time.monotonic() - frame.captured) * 1000)
        indices.append(frame.index)
        slow_inference.wait(0.3)
    stop.set()
    mailbox.close()
    thread.join(10)
    snapshot = health.snapshot()
    # 12.5 fps against ~3 fps: most frames are dropped; without dropping the 10th frame would be ~2 s old.
    assert snapshot.frames_dropped >= 10
    assert all(b - a >= 2 for a, b in itertools.pairwise(indices))
    assert snapshot.frames_captured <= snapshot.frames_dropped + len(indices) + 1  # nothing unaccounted
    assert max(ages) < 1000, ages


def test_image_folder_skips_and_counts_undecodable_files(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "1b.png").write_bytes(b"\x89PNG broken")
    mailbox, health, thread, _ = drain(open_source(SourceConfig(uri=str(tmp_path))))
    frames = take_all(mailbox)
    thread.join(10)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]
    assert health.snapshot().frames_skipped == 1


def test_image_folder_skips_and_counts_images_over_the_pixel_limit_with_one_log_line(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 7, np.uint8))
    (tmp_path / "b-bomb.png").write_bytes(blank_png(6000, 5000))  # decodes to 30 Mpx: 90 MB as BGR
    cv2.imwrite(str(tmp_path / "c.png"), np.full((20, 30, 3), 9, np.uint8))
    source = open_source(SourceConfig(uri=str(tmp_path), loop=True, max_pixels=24_000_000))
    mailbox, health, thread, stop = drain(source)
    try:
        frames = [mailbox.take(timeout=10) for _ in range(6)]  # three passes over the folder
    finally:
        stop.set()
        mailbox.close()
        thread.join(10)
    assert [int(f.image[0, 0, 0]) for f in frames] == [7, 9] * 3
    assert health.snapshot().frames_skipped >= 2  # the bomb, once per pass
    lines = [r.message for r in caplog.records if "b-bomb.png" in r.message]
    assert lines == [f"{tmp_path / 'b-bomb.png'}: 6000x5000 pixels, over the limit of 24000000 pixels, skipped;"
                     " raise [source] max_pixels to classify it"]  # fmt: skip


def test_glob_and_missing_sources(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert open_source(SourceConfig(uri=str(tmp_path / "*.jpg"))).description == "1 images"
    with pytest.raises(EdgesightError) as error:
        open_source(SourceConfig(uri=str(tmp_path / "absent.mp4")))
    assert error.value.exit_code == EXIT_NO_INPUT and "absent.mp4" in str(error.value)


def test_corrupt_video_file_fails_the_capture_with_a_clear_error(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    mailbox, health, thread, _ = drain(open_source(SourceConfig(uri=str(broken))))
    with pytest.raises(EdgesightError, match="cannot decode this video file"):
        mailbox.take(timeout=10)
    thread.join(10)
    assert health.snapshot().source_state == "failed"


def jpegs(count: int = 4) -> list[bytes]:
    frames = []
    for i in range(count):
        image = np.zeros((120, 160, 3), np.uint8)
        cv2.putText(image, str(i), (50, 90), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    return frames


def test_mjpeg_stream_dies_and_comes_back(mjpeg_server):
    server = mjpeg_server(jpegs(), fps=30)
    source = open_source(SourceConfig(uri=server.url, timeout_s=2))
    assert source.live and source.description.startswith("stream http://127.0.0.1")
    mailbox, health, thread, stop = drain(source)
    try:
        first = mailbox.take(timeout=20)
        assert first is not None and first.image.shape == (120, 160, 3)
        server.stop()
        wait_for(lambda: health.snapshot().source_state == "reconnecting", what="the loss to be noticed")
        failures_seen = health.snapshot().reconnects
        wait_for(lambda: health.snapshot().reconnects > failures_seen, what="a retry against the dead server")
        mailbox.take(timeout=0.01)  # empty the slot: what arrives next comes after the restart
        server.start()
        again = wait_for(lambda: mailbox.take(timeout=0.5), what="frames after the restart")
        assert again.index > first.index
        assert health.snapshot().source_state == "open" and server.connections >= 2
        assert "stream http://127.0.0.1" in health.snapshot().source_error
    finally:
        stop.set()
        mailbox.close()
        thread.join(10)
    assert not thread.is_alive()


def test_a_returning_stream_is_used_within_two_seconds_although_the_backoff_grew(mjpeg_server):
    server = mjpeg_server(jpegs(), fps=30)
    source = open_source(SourceConfig(uri=server.url, timeout_s=1))
    mailbox, health, thread, stop = drain(source, backoff=Backoff(8.0, 30.0))  # the next retry 8 s away
    try:
        assert mailbox.take(timeout=20) is not None
        server.stop()
        wait_for(lambda: health.snapshot().source_state == "reconnecting", what="the loss to be noticed")
        mailbox.take(timeout=0.01)
        time.sleep(1.5)  # the outage itself (a camera rebooting takes longer): not a synchronization
        server.start()
        back = time.monotonic()
        wait_for(lambda: mailbox.take(timeout=0.1), timeout=2.0, what="a frame within 2 s of the stream's return")
        assert time.monotonic() - back < 2.0 and health.snapshot().reconnects == 1
    finally:
        stop.set()
        mailbox.close()
        thread.join(10)


def test_a_reachable_source_that_fails_to_open_keeps_its_backoff():
    """A host that accepts connections but never answers the request is not retried at every probe."""
    listener = socket.create_server(("127.0.0.1", 0))  # never accepts: connects succeed, requests time out
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/stream.mjpg"
    mailbox, health, thread, stop = drain(open_source(SourceConfig(uri=url, timeout_s=0.5)), backoff=Backoff(1.5, 30))
    try:
        wait_for(lambda: health.snapshot().source_state == "reconnecting", what="the first failure")
        assert not stop.wait(1.0)  # the probes would say reachable: the backoff must hold regardless
        assert health.snapshot().reconnects == 0
    finally:
        stop.set()
        mailbox.close()
        thread.join(10)
        listener.close()


def test_camera_that_does_not_open_is_retried_not_fatal():
    """No /dev/video99 here: the source keeps retrying with backoff until stopped."""
    mailbox, health, thread, stop = drain(open_source(SourceConfig(uri="/dev/video99", timeout_s=1)))
    wait_for(lambda: health.snapshot().reconnects >= 2, what="two retries")
    assert health.snapshot().source_state == "reconnecting"
    assert "camera /dev/video99 cannot be opened" in health.snapshot().source_error
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(SourceEndedError):
        mailbox.take(timeout=1)


def test_backoff_doubles_up_to_its_cap():
    delays = Backoff(0.5, 3.0).delays()
    assert [next(delays) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


class FakePicamera2:
    """FAKE of picamera2.Picamera2 (no camera exists here): serves frames of a real video as the ISP
    would, YUV420 at the lores size with rows padded to a 64-byte stride, and records how it was used."""

    instances: ClassVar[list["FakePicamera2"]] = []
    frames: ClassVar[list[np.ndarray]] = []
    fail_after: ClassVar[int | None] = None

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config: dict | None = None
        self.started = self.closed = False
        self.captured = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main, lores, buffer_count, controls):
        return {"main": dict(main), "lores": dict(lores), "buffer_count": buffer_count, "controls": controls}

    def align_configuration(self, config: dict) -> None:
        width, height = config["lores"]["size"]
        config["lores"]["size"] = (width + (-width % 2), height + (-height % 2))

    def configure(self, config: dict) -> None:
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


@pytest.fixture
def fake_picamera2(monkeypatch, car_video):
    capture = cv2.VideoCapture(str(car_video))
    frames = [capture.read()[1] for _ in range(5)]
    capture.release()
    monkeypatch.setattr(FakePicamera2, "instances", [])
    monkeypatch.setattr(FakePicamera2, "frames", frames)
    monkeypatch.setattr(FakePicamera2, "fail_after", None)
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    return FakePicamera2


def test_picamera2_reads_lores_at_the_model_size_with_few_buffers_in_bgr(fake_picamera2):
    source = open_source(SourceConfig(uri="picamera2"), model_size=(96, 54))
    assert isinstance(source, PicameraSource)
    source.open()
    try:
        image = source.read()
    finally:
        source.close()
    camera = fake_picamera2.instances[0]
    assert camera.config["lores"] == {"size": (96, 54), "format": "YUV420"}
    assert camera.config["buffer_count"] == 2 and camera.closed and not camera.started
    assert image.shape == (54, 96, 3)
    expected = cv2.resize(fake_picamera2.frames[0], (96, 54), interpolation=cv2.INTER_AREA)
    # YUV 4:2:0 subsampling loses some colour detail, but a swapped red and blue would be far off.
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 6
    assert (
        np.abs(image[..., ::-1].astype(int) - expected.astype(int)).mean()
        > 2 * np.abs(image.astype(int) - expected.astype(int)).mean()
    )


def test_picamera2_that_stops_delivering_is_reopened(fake_picamera2):
    fake_picamera2.fail_after = 3
    source = open_source(SourceConfig(uri="picamera2:1", lores_width=64, lores_height=48, buffers=3))
    mailbox, health, thread, stop = drain(source)
    try:
        wait_for(lambda: health.snapshot().reconnects >= 1 and len(fake_picamera2.instances) >= 2, what="reopen")
        assert "fake: the camera stopped delivering" in health.snapshot().source_error
        assert fake_picamera2.instances[0].closed  # the failed camera was released before reopening
        assert all(c.camera_num == 1 and c.config["buffer_count"] == 3 for c in fake_picamera2.instances)
    finally:
        stop.set()
        mailbox.close()
        thread.join(10)
    assert health.snapshot().frames_captured >= 3


def test_picamera2_missing_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a machine without it
    source = open_source(SourceConfig(uri="picamera2"))
    with pytest.raises(EdgesightError) as error:
        source.open()
    assert error.value.exit_code == EXIT_UNAVAILABLE
    assert "python3-picamera2" in str(error.value) and "--system-site-packages" in str(error.value)
