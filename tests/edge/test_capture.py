"""Capture sources against real parts: a real video clip, image folders, an MJPEG server on 127.0.0.1,
and picamera2 through a fake of its Picamera2 class (the only part that cannot exist here)."""

import itertools
import socket
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge.capture import SourceEndedError, open_source
from edge.capture.mailbox import FrameMailbox
from edge.capture.opencv import CameraSource
from edge.capture.picamera import PicameraSource
from edge.capture.thread import Backoff, CaptureThread
from edge.config import SourceConfig
from edge.errors import EXIT_NO_INPUT, EXIT_UNAVAILABLE, EdgesightError
from edge.preprocess import halve
from edge.state import LiveState
from tests.helpers import CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH, blank_png, drain, take_all, wait_for


def test_video_file_delivers_every_frame_in_order_with_timestamps(camera_clip):
    mailbox, state, thread, _ = drain(open_source(SourceConfig(uri=str(camera_clip))))
    frames = take_all(mailbox)
    thread.join(10)
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    assert frames[0].image.shape == (CLIP_HEIGHT, CLIP_WIDTH, 3) and frames[0].path is None
    assert all(b.captured >= a.captured for a, b in itertools.pairwise(frames))
    snapshot = state.snapshot()
    assert snapshot.frames_captured == CLIP_FRAMES and snapshot.frames_dropped == 0
    assert snapshot.source_state == "ended"


def test_the_capture_thread_halves_each_frame_as_the_models_contract_would(camera_clip):
    """``halve_to``: the first step of the model's area resize, done in the capture thread: the same pixels."""
    full = [f.image for f in take_all(drain(open_source(SourceConfig(uri=str(camera_clip))))[0])]
    source = open_source(SourceConfig(uri=str(camera_clip)))
    mailbox, state = FrameMailbox(), LiveState()
    CaptureThread(source, mailbox, state, threading.Event(), Backoff(), halve_to=(32, 32)).start()
    halved = [f.image for f in take_all(mailbox)]
    assert len(halved) == len(full) == CLIP_FRAMES
    assert halved[0].shape[0] < CLIP_HEIGHT
    assert all(np.array_equal(h, halve(f, 32, 32)) for h, f in zip(halved, full, strict=True))


def test_looped_video_file_restarts_at_its_end(camera_clip):
    mailbox, _state, thread, stop = drain(open_source(SourceConfig(uri=str(camera_clip), loop=True)))
    frames = take_all(mailbox, limit=CLIP_FRAMES + 20)
    stop.set()
    mailbox.close()
    thread.join(10)
    assert len(frames) == CLIP_FRAMES + 20 and frames[-1].index == CLIP_FRAMES + 19
    assert np.array_equal(frames[CLIP_FRAMES].image, frames[0].image)  # the clip's first frame again
    assert not np.array_equal(frames[CLIP_FRAMES - 1].image, frames[0].image)


def test_paced_video_drops_stale_frames_and_frame_age_stays_bounded(camera_clip):
    """A source faster than inference: the consumer always gets the newest frame, never a backlog."""
    mailbox, state, thread, stop = drain(open_source(SourceConfig(uri=str(camera_clip), pace=True, loop=True)))
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
    snapshot = state.snapshot()
    # The clip at 12.5 fps against ~3 fps: most frames are dropped; without dropping the 10th frame would be ~2 s old.
    assert snapshot.frames_dropped >= 10
    assert all(b - a >= 2 for a, b in itertools.pairwise(indices))
    assert snapshot.frames_captured <= snapshot.frames_dropped + len(indices) + 1  # nothing unaccounted
    assert max(ages) < 1000, ages


def test_image_folder_skips_and_counts_undecodable_files_and_frames_name_their_file(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "1b.png").write_bytes(b"\x89PNG broken")
    mailbox, state, thread, _ = drain(open_source(SourceConfig(uri=str(tmp_path))))
    frames = take_all(mailbox)
    thread.join(10)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]
    assert [f.path for f in frames] == [str(tmp_path / f"{i}.png") for i in range(3)]
    snapshot = state.snapshot()
    assert (snapshot.frames_skipped, snapshot.frames_captured, snapshot.source_state) == (1, 3, "ended")


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
    mailbox, state, thread, _ = drain(open_source(SourceConfig(uri=str(broken))))
    with pytest.raises(EdgesightError, match="cannot decode this video file"):
        mailbox.take(timeout=10)
    thread.join(10)
    assert state.snapshot().source_state == "failed"


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
    mailbox, state, thread, stop = drain(source)
    try:
        first = mailbox.take(timeout=20)
        assert first is not None and first.image.shape == (120, 160, 3)
        server.stop()
        wait_for(lambda: state.snapshot().source_state == "reconnecting", what="the loss to be noticed")
        failures_seen = state.snapshot().reconnects
        wait_for(lambda: state.snapshot().reconnects > failures_seen, what="a retry against the dead server")
        mailbox.take(timeout=0.01)  # empty the slot: what arrives next comes after the restart
        server.start()
        again = wait_for(lambda: mailbox.take(timeout=0.5), what="frames after the restart")
        assert again.index > first.index
        assert state.snapshot().source_state == "open" and server.connections >= 2
        assert "stream http://127.0.0.1" in state.snapshot().source_error
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


def test_a_camera_node_that_appears_is_tried_at_once_not_after_the_backoff(tmp_path):
    """A re-plugged camera's node comes back: the next attempt follows within a probe, however long the
    backoff has grown. The node here is a plain file, which V4L2 refuses to open: the point is when."""
    node = tmp_path / "video0"
    _, state, thread, stop = drain(CameraSource(str(node), timeout_s=1), backoff=Backoff(60.0, 60.0))
    try:
        wait_for(lambda: "is not there" in state.snapshot().source_error, what="the missing node to be noticed")
        node.write_bytes(b"")
        wait_for(lambda: "cannot be opened" in state.snapshot().source_error, timeout=5, what="an attempt at once")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_camera_that_does_not_open_is_retried_not_fatal():
    """No /dev/video99 here: the source keeps retrying with backoff until stopped."""
    mailbox, state, thread, stop = drain(open_source(SourceConfig(uri="/dev/video99", timeout_s=1)))
    wait_for(lambda: state.snapshot().reconnects >= 2, what="two retries")
    assert state.snapshot().source_state == "reconnecting"
    assert "camera /dev/video99 is not there (/dev/video99 is missing: unplugged?)" in state.snapshot().source_error
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(SourceEndedError):
        mailbox.take(timeout=1)


def test_backoff_doubles_up_to_its_cap():
    delays = Backoff(0.5, 3.0).delays()
    assert [next(delays) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


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
    mailbox, state, thread, stop = drain(source)
    try:
        wait_for(lambda: state.snapshot().reconnects >= 1 and len(fake_picamera2.instances) >= 2, what="reopen")
        assert "fake: the camera stopped delivering" in state.snapshot().source_error
        assert fake_picamera2.instances[0].closed  # the failed camera was released before reopening
        assert all(c.camera_num == 1 and c.config["buffer_count"] == 3 for c in fake_picamera2.instances)
    finally:
        stop.set()
        mailbox.close()
        thread.join(10)
    assert state.snapshot().frames_captured >= 3


def test_picamera2_missing_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a machine without it
    source = open_source(SourceConfig(uri="picamera2"))
    with pytest.raises(EdgesightError) as error:
        source.open()
    assert error.value.exit_code == EXIT_UNAVAILABLE
    assert "python3-picamera2" in str(error.value) and "--system-site-packages" in str(error.value)
