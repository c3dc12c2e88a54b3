"""Sources that deliver smaller frames: MJPEG decoded at reduced scale (a real stream on 127.0.0.1) and a
V4L2 camera asked for a halved size (through a fake of cv2.VideoCapture: no camera exists here)."""

import threading
from typing import ClassVar

import cv2
import numpy as np
import pytest

from edge.capture import open_source
from edge.capture.mjpeg import REDUCED, HttpSource, reduction
from edge.capture.opencv import CameraSource
from edge.config import Config, DataLoopConfig, ModelConfig, SourceConfig
from edge.preprocess import PreprocessSpec, prepare
from edge.result import Result
from edge.service import run
from edge.state import LiveState
from tests.helpers import wait_for


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@pytest.mark.parametrize(
    ("shape", "model", "scale"),
    [((720, 1280), (32, 32), 8), ((720, 1280), (96, 96), 2), ((1080, 1920), (96, 96), 4),
     ((1080, 1920), (224, 224), 2), ((480, 640), (224, 224), 1), ((200, 200), (32, 32), 2)],
)  # fmt: skip
def test_the_reduction_is_the_largest_that_keeps_twice_the_models_size(shape, model, scale):
    assert reduction(shape, model) == scale


def test_a_large_mjpeg_stream_is_decoded_at_the_reduction_that_covers_the_model(mjpeg_server, sized_frames):
    frame = jpeg(sized_frames["720p"][0])
    server = mjpeg_server([frame], fps=30)
    source = open_source(SourceConfig(uri=server.url, timeout_s=2), (96, 96), averaging=True)
    assert isinstance(source, HttpSource) and source.decode_to == (96, 96)
    source.open()
    try:
        first, second = source.read(), source.read()
    finally:
        source.close()
    assert first.shape == (720, 1280, 3)  # the size is learnt from a full decode
    assert source.scale == 2 and second.shape == (360, 640, 3)
    assert np.array_equal(second, cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_REDUCED_COLOR_2))


@pytest.mark.parametrize(
    ("config", "averaging"),
    [({}, False), ({"roi": (0, 0, 64, 64)}, True), ({"shrink_at_source": False}, True)],
    ids=["contract-not-area", "roi-in-full-frame-pixels", "turned-off"],
)
def test_mjpeg_is_decoded_in_full_unless_the_contract_averages_and_nothing_needs_full_frames(config, averaging):
    source = open_source(SourceConfig(uri="http://127.0.0.1:9/stream", **config), (96, 96), averaging=averaging)
    assert isinstance(source, HttpSource) and source.decode_to is None


def test_a_stream_that_changes_size_or_sends_other_images_is_decoded_in_full_first(sized_frames):
    source = HttpSource("http://127.0.0.1:9/stream", decode_to=(32, 32))
    large, small = jpeg(sized_frames["1080p"][0]), jpeg(sized_frames["480p"][0])
    assert source._decode(large).shape == (1080, 1920, 3)
    assert source._decode(large).shape == (135, 240, 3) and source.scale == 8
    assert source._decode(small).shape == (480, 640, 3)  # the reduced shape did not fit: decoded again, in full
    assert source._decode(small).shape == (120, 160, 3) and source.scale == 4
    png = cv2.imencode(".png", sized_frames["720p"][0])[1].tobytes()
    assert source._decode(png).shape == (720, 1280, 3) and source.scale == 1  # only JPEGs scale in the decoder


@pytest.mark.parametrize("size", [96, 224])
def test_reduced_decoding_moves_the_models_input_less_than_jpeg_compression_does(sized_frames, size):
    """Why it is safe for area contracts: the DCT-domain scaling averages blocks as the area resize does."""
    spec = PreprocessSpec(size, size)
    original = sized_frames["1080p"][0]
    data = np.frombuffer(jpeg(original), np.uint8)
    full = prepare(cv2.imdecode(data, cv2.IMREAD_COLOR), spec).astype(int)
    scale = reduction(original.shape, (size, size))
    reduced = prepare(cv2.imdecode(data, REDUCED[scale]), spec).astype(int)
    compression = np.abs(prepare(original, spec).astype(int) - full).mean()
    assert scale > 1 and np.abs(reduced - full).mean() < compression


class FakeV4l2Capture:
    """A fake of ``cv2.VideoCapture`` on a V4L2 camera (none exists here). Like a V4L2 driver it starts at
    its default size and, asked for another, sets the nearest one it offers."""

    sizes: ClassVar[list[tuple[int, int]]] = []
    instances: ClassVar[list["FakeV4l2Capture"]] = []

    def __init__(self, device: object, api: int = 0) -> None:
        self.size, self._width = self.sizes[0], self.sizes[0][0]
        self.instances.append(self)

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self._width = int(value)
        elif prop == cv2.CAP_PROP_FRAME_HEIGHT:  # OpenCV applies a size once it has both sides
            wanted = (self._width, int(value))
            self.size = min(self.sizes, key=lambda s: abs(s[0] - wanted[0]) + abs(s[1] - wanted[1]))
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: self.size[0], cv2.CAP_PROP_FRAME_HEIGHT: self.size[1]}.get(prop, 30.0)

    def read(self) -> tuple[bool, np.ndarray]:
        return True, np.full((self.size[1], self.size[0], 3), 128, np.uint8)

    def release(self) -> None:
        return None


@pytest.fixture
def fake_v4l2(monkeypatch, tmp_path):
    monkeypatch.setattr(cv2, "VideoCapture", FakeV4l2Capture)
    monkeypatch.setattr(FakeV4l2Capture, "instances", [])
    # The fake camera's device node: CameraSource looks for it before opening.
    node = tmp_path / "video0"
    node.touch()
    init = CameraSource.__init__

    def with_node(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.node = str(node)

    monkeypatch.setattr(CameraSource, "__init__", with_node)
    return FakeV4l2Capture


def frame_size(source: CameraSource) -> tuple[int, int]:
    source.open()
    try:
        height, width = source.read().shape[:2]
    finally:
        source.close()
    return width, height


@pytest.mark.parametrize(("model", "expected"), [((96, 96), (160, 120)), ((224, 224), (320, 240))])
def test_a_camera_without_a_size_gives_its_smallest_halving_that_covers_the_model(fake_v4l2, model, expected):
    fake_v4l2.sizes = [(640, 480), (1280, 720), (320, 240), (160, 120)]
    assert frame_size(open_source(SourceConfig(uri="0"), model)) == expected


def test_a_camera_without_the_halved_sizes_keeps_its_default(fake_v4l2):
    fake_v4l2.sizes = [(640, 480), (1280, 720), (176, 144)]  # 176x144 is near 160x120, but not its shape
    assert frame_size(open_source(SourceConfig(uri="0"), (96, 96))) == (640, 480)


@pytest.mark.parametrize(
    ("config", "expected"),
    [({"width": 1280, "height": 720}, (1280, 720)), ({"roi": (0, 0, 100, 100)}, (640, 480)),
     ({"shrink_at_source": False}, (640, 480))],
    ids=["size-configured", "roi-in-full-frame-pixels", "turned-off"],
)  # fmt: skip
def test_a_camera_keeps_the_configured_or_default_size_when_told_to(fake_v4l2, config, expected):
    fake_v4l2.sizes = [(640, 480), (1280, 720), (320, 240), (160, 120)]
    assert frame_size(open_source(SourceConfig(uri="0", **config), (96, 96))) == expected


@pytest.mark.slow
@pytest.mark.parametrize("keeping", [False, True], ids=["classifying", "with-a-data-loop"])
def test_the_daemon_decodes_a_large_mjpeg_stream_small_unless_it_keeps_frames_and_still_reads_the_digit(
    digits_bundle, digits_dir, mjpeg_server, tmp_path, monkeypatch, keeping
):
    """End to end: an area bundle (32x32) on a 640x480 stream is decoded at 1/4, halved to 80x60 in the capture
    thread, and classified as before; with a data loop the frames it may keep stay at the stream's size."""
    frames = []
    for path in sorted((digits_dir / "7").iterdir())[:5]:
        image = cv2.resize(cv2.imread(str(path)), (640, 480), interpolation=cv2.INTER_CUBIC)
        frames.append(jpeg(image, 90))
    server = mjpeg_server(frames, fps=20)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))  # where a data loop keeps frames
    loop = DataLoopConfig(below=0.0, on_change=False) if keeping else None
    config = Config(
        source=SourceConfig(uri=server.url, timeout_s=5),
        model=ModelConfig(path=str(digits_bundle)),
        dataloop=loop,
    )
    state, stop = LiveState(), threading.Event()
    seen: list[tuple[str, tuple[int, ...]]] = []

    def emit(result: Result) -> None:  # called right after the state took the frame the model was given
        image = state.latest()[2]
        assert image is not None
        seen.append((result.label, image.shape))

    daemon = threading.Thread(target=run, args=(config, stop, emit, state), name="daemon")
    daemon.start()
    try:
        wait_for(lambda: len(seen) >= 10, what="results from the stream")
    finally:
        stop.set()
        daemon.join(60)
    shapes = [shape for _, shape in seen]
    if keeping:
        assert shapes.count((480, 640, 3)) == len(shapes)
    else:  # decoded at 1/4 (the first in full, to learn the stream's size), then halved in the capture thread
        assert shapes.count((60, 80, 3)) == len(shapes)
    labels = [label for label, _ in seen]
    assert labels.count("7") / len(labels) >= 0.9
