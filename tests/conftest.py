"""Fixtures for the real parts: the digits dataset, a model trained on it once per session, its int8 bundle,
a camera clip, a running daemon, MJPEG cameras. Helpers live in tests/helpers.py, fakes in tests/fakes.py."""

import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes import FakePicamera2
from tests.helpers import (
    BACKBONE_SIZE,
    BACKBONE_WIDTH,
    CLIP_FPS,
    bundle_copy,
    camera_frames,
    colour_backbone,
    free_port,
    read_frames,
    start_daemon,
    switch,
    write_legacy_backbone,
    write_video,
)
from tests.parts import Device, MjpegServer, NotifySocket


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--vm", action="store_true", help="boot the arm64 VM and run the system test (tests/vm)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The system test boots a VM for minutes: only `make system-test` (--vm) runs it."""
    if config.getoption("--vm"):
        return
    skip = pytest.mark.skip(reason="the system test: make system-test")
    for item in items:
        if item.get_closest_marker("vm"):  # not `in keywords`: a checkout in a folder named vm
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Daemons whose config names no [collect] state_dir keep their inbox under $XDG_STATE_HOME: a
    folder of the session's, never the user's."""
    folder = tmp_path_factory.mktemp("state-home")
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(folder)
    yield folder
    if before is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.digits import write_digits

    out = tmp_path_factory.mktemp("data") / "digits"
    write_digits(out)
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The preprocessed-image cache of the session's runs, out of the user's ~/.cache."""
    return tmp_path_factory.mktemp("cache")


# The digits recipe: small greyscale images; a flipped digit is another digit, so no flips.
DIGITS_FIT = {"size": 32, "color": "grayscale", "flip": "none", "epochs": 10, "patience": 4}


@pytest.fixture(scope="session")
def digits_run(digits_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from train.fit import FitConfig, fit

    out = tmp_path_factory.mktemp("runs") / "digits"
    return fit(FitConfig(data=str(digits_dir), out=str(out), cache_dir=str(cache_dir), **DIGITS_FIT))


@pytest.fixture(scope="session")
def small_digits(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 digits per class: for the tests that train several short runs."""
    out = tmp_path_factory.mktemp("data") / "small-digits"
    for class_dir in sorted(digits_dir.iterdir()):
        (out / class_dir.name).mkdir(parents=True)
        for path in sorted(class_dir.iterdir())[:30]:
            shutil.copy(path, out / class_dir.name / path.name)
    return out


@pytest.fixture(scope="session")
def digits_bundle(digits_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.quantize import quantize

    out = tmp_path_factory.mktemp("bundles") / "digits"
    quantize(digits_run.path, out)
    return out


@pytest.fixture(scope="session")
def five_digits_bundle(digits_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle that knows only the digits 0 to 4 (the digits recipe on their images): on all ten digits it is
    right on half at best, a clearly worse model that has not collapsed."""
    from train.fit import FitConfig, fit
    from train.quantize import quantize

    data = tmp_path_factory.mktemp("data") / "five-digits"
    for digit in "01234":
        shutil.copytree(digits_dir / digit, data / digit, dirs_exist_ok=True)
    run = fit(FitConfig(data=str(data), out=str(data.parent / "run"), cache_dir=str(cache_dir), **DIGITS_FIT))
    out = tmp_path_factory.mktemp("bundles") / "five-digits"
    quantize(run.path, out, max_drop=100.0, representative=100)
    return out


@pytest.fixture
def daemon(tmp_path, digits_bundle, digits_dir):
    """The daemon on a looping image folder, with a notify socket, a watchdog and HTTP on loopback."""
    yield from _daemon(tmp_path, digits_bundle, digits_dir, token=None)


@pytest.fixture
def daemon_with_token(tmp_path, digits_bundle, digits_dir):
    """The same, its HTTP API behind a bearer token (``.token``) read from ``[http] token_file``, as in production."""
    yield from _daemon(tmp_path, digits_bundle, digits_dir, token="s3cret-token")


def _daemon(tmp_path: Path, digits_bundle: Path, digits_dir: Path, token: str | None) -> Iterator[subprocess.Popen]:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    bundle_copy(digits_bundle, bundles / "1.0.0", "1.0.0")
    switch(bundles, "1.0.0")
    port = free_port()
    config = tmp_path / "edgesight.toml"
    if token:
        (tmp_path / "token").write_text(token + "\n")
    config.write_text(
        f'[source]\nuri = "{digits_dir / "4"}"\nloop = true\nmax_fps = 30\n'
        f'[model]\npath = "{bundles / "current"}"\nthreads = 1\n'
        f'[output]\njsonl = "{tmp_path / "results.jsonl"}"\n'
        f"[http]\nport = {port}\n" + (f'token_file = "{tmp_path / "token"}"\n' if token else "")
    )
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "3000000"}
    process = start_daemon(config, env=env)
    process.notify, process.bundles, process.url = notify, bundles, f"http://127.0.0.1:{port}"
    process.results, process.config, process.token = tmp_path / "results.jsonl", config, token
    yield process
    process.kill()
    process.wait(30)


@pytest.fixture(scope="session")
def camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A camera's MPEG-4 clip, written once per session (helpers.CLIP_* give its size, rate and length)."""
    return write_video(tmp_path_factory.mktemp("video") / "camera.mp4", camera_frames(), CLIP_FPS)


CAMERA_SIZES = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080), "odd": (1001, 563)}


@pytest.fixture(scope="session")
def sized_frames() -> dict[str, list]:
    """BGR frames drawn at camera sizes (and an odd one), so a downscale meets full-resolution detail:
    smooth texture with hard edges and text, and noise."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    frames = {}
    for name, (width, height) in CAMERA_SIZES.items():
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        scene = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        cv2.rectangle(scene, (width // 8, height // 6), (width // 3, height // 2), (250, 250, 250), -1)
        cv2.circle(scene, (2 * width // 3, height // 2), height // 5, (40, 200, 90), -1)
        cv2.putText(
            scene, "edgesight", (width // 10, 4 * height // 5), cv2.FONT_HERSHEY_SIMPLEX, height / 250, (0,) * 3, 3
        )
        frames[name] = [scene, rng.integers(0, 256, (height, width, 3), dtype=np.uint8)]
    return frames


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch, camera_clip: Path) -> type[FakePicamera2]:
    """picamera2 replaced by its fake, serving the clip's first frames; reset for each test."""
    monkeypatch.setattr(FakePicamera2, "instances", [])
    monkeypatch.setattr(FakePicamera2, "frames", read_frames(camera_clip, list(range(5))))
    monkeypatch.setattr(FakePicamera2, "fail_after", None)
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    return FakePicamera2


@pytest.fixture
def mjpeg_server() -> Iterator[Callable[..., MjpegServer]]:
    """A factory: ``serve(jpeg_frames, fps, repeat)`` starts an MJPEG server; every one is stopped at teardown."""
    servers: list[MjpegServer] = []

    def serve(frames: list[bytes], fps: float = 25.0, repeat: bool = True) -> MjpegServer:
        server = MjpegServer(frames, fps, repeat)
        server.start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def digits_tflite(digits_run, digits_bundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The digits network converted three ways, as plain .tflite files each beside a labels.txt:
    float32, uint8 input/output and int8 input/output (the bundle's own model)."""
    import contextlib
    import io
    import shutil

    import tensorflow as tf

    from train.quantize import convert
    from train.run import split_pixels

    model = digits_run.load_model()
    calibration = split_pixels(digits_run, "train")[0][:200]
    out = tmp_path_factory.mktemp("plain")
    with contextlib.redirect_stdout(io.StringIO()):
        models = {"float32": tf.lite.TFLiteConverter.from_keras_model(model).convert()}
        models["uint8"] = convert(model, calibration, io_type="uint8")
    paths = {}
    for kind, flatbuffer in models.items():
        paths[kind] = out / kind / "digits.tflite"
        paths[kind].parent.mkdir()
        paths[kind].write_bytes(flatbuffer)
    paths["int8"] = out / "int8" / "digits.tflite"
    paths["int8"].parent.mkdir()
    shutil.copy(digits_bundle / "model.tflite", paths["int8"])
    for path in paths.values():
        shutil.copy(digits_bundle / "labels.txt", path.with_name("labels.txt"))
    return paths


@pytest.fixture
def devices(tmp_path: Path):
    """A factory: ``make(name, {class: count}, seed)`` serves a device's labelled dataset on 127.0.0.1."""
    made: list[Device] = []

    def make(name: str, labelled: dict[str, int], seed: int = 0) -> Device:
        made.append(Device(tmp_path / name, name, labelled, seed))
        return made[-1]

    yield make
    for device in made:
        device.close()


@pytest.fixture(scope="session")
def keras_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras home whose cache holds the ImageNet MobileNetV2 file ``--weights imagenet`` asks for (width 0.35,
    96 px), made here (``colour_backbone``): the real loading code reads it, nothing is downloaded."""
    from train.models.pretrained import mobilenetv2_file

    home = tmp_path_factory.mktemp("keras")
    backbone = colour_backbone(BACKBONE_WIDTH, BACKBONE_SIZE)
    write_legacy_backbone(backbone, home / "models" / mobilenetv2_file(BACKBONE_WIDTH, BACKBONE_SIZE))
    return home
