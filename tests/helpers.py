"""Plain helpers shared by the tests; tests import them from here, never from conftest.py or another test."""

import hashlib
import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pytest
from PIL import Image

from edge.bundle import GoldenSample, Manifest, TensorSpec, write_bundle
from edge.capture import CaptureThread, FrameMailbox, SourceEndedError
from edge.capture.thread import Backoff
from edge.preprocess import PreprocessSpec
from edge.state import LiveState

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEADLINE_S = 20.0  # how long a test waits for something that takes milliseconds when it works

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# The camera clip the session writes (conftest's ``camera_clip``): a camera's size and rate, several
# hundred frames, motion over a textured background and sensor noise, so the encoder does real work.
CLIP_WIDTH, CLIP_HEIGHT = 768, 432
CLIP_FPS = 12.5
CLIP_FRAMES = 300


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 10) -> Path:
    """An MPEG-4 file of ``frames`` (the encoder OpenCV's wheels ship), written as they come."""
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in itertools.chain([first], frames):
        writer.write(frame)
    writer.release()
    return path


def camera_frames() -> Iterator[np.ndarray]:
    """The camera clip's frames: a car-sized box driving over a textured scene, noisy like a sensor."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:CLIP_HEIGHT, 0:CLIP_WIDTH].astype(np.float32)
    # Colour varies smoothly and detail is in the brightness, as in a real scene (and so 4:2:0 chroma
    # subsampling loses little of it); the road below the horizon is darker.
    colour = np.dstack([90 + 60 * cols / CLIP_WIDTH, 110 + 40 * rows / CLIP_HEIGHT, 140 - 50 * rows / CLIP_HEIGHT])
    colour[rows > CLIP_HEIGHT * 0.55] *= 0.6
    for house, left in enumerate(range(40, CLIP_WIDTH, 130)):  # hard edges for the resizers to get right
        shade = 60 + house * 37 % 140
        cv2.rectangle(colour, (left, 80 + house * 53 % 90), (left + 90, 237), (shade, shade, shade + 10), -1)
    detail = cv2.GaussianBlur(rng.normal(0, 25, (CLIP_HEIGHT, CLIP_WIDTH)).astype(np.float32), (3, 3), 0)
    scene = np.clip(colour + detail[..., None], 0, 247).astype(np.uint8)
    noise = [rng.integers(0, 8, scene.shape, dtype=np.uint8) for _ in range(7)]
    for index in range(CLIP_FRAMES):
        frame = scene.copy()
        x = index * 7 % (CLIP_WIDTH + 160) - 160
        cv2.rectangle(frame, (x, 250), (x + 160, 330), (30, 30, 200), -1)
        for wheel in (x + 35, x + 125):
            cv2.circle(frame, (wheel, 330), 18, (20, 20, 20), -1)
        cv2.putText(frame, f"{index:03d}", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        yield cv2.add(frame, noise[index % len(noise)])


def read_frames(video: Path, indices: list[int]) -> list[np.ndarray]:
    """The decoded frames at ``indices`` of a video file."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    for index in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok, f"{video} has no frame {index}"
        frames.append(frame)
    capture.release()
    return frames


# Networking and the running daemon -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return json.loads(response.read())


def status_or_none(url: str, token: str | None = None) -> Any:
    try:
        return get_json(url, token)
    except OSError:
        return None


def start_daemon(config: Path | str, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`edgesight run --config CONFIG` as a process of its own; stderr kept for the log, stdout discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config), *flags],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def run_cli(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run one of the installed console scripts as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """The user sees one line naming the problem, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# Bundles ---------------------------------------------------------------------------------------------

MODEL = b"not really a flatbuffer, but the bundle module only hashes it"


def manifest(**kw: Any) -> Manifest:
    """A valid manifest for ``MODEL``; keywords replace fields."""
    fields = {
        "name": "things",
        "version": "20260101-000000",
        "created": "2026-01-01T00:00:00+00:00",
        "labels": ("cat", "dog"),
        "preprocess": PreprocessSpec(height=96, width=96, resize="center_crop", mean=(127.5,), std=(127.5,)),
        "input": TensorSpec("int8", (1, 96, 96, 3), 0.0078125, 0),
        "output": TensorSpec("int8", (1, 2), 0.00390625, -128),
        "scores": "probabilities",
        "model_sha256": hashlib.sha256(MODEL).hexdigest(),
        "golden": (GoldenSample("golden/00_cat.png", "cat", (100.0, -100.0)),),
        "metrics": {"float": {"accuracy": 0.9}, "int8": {"accuracy": 0.89}},
    }
    return Manifest(**{**fields, **kw})


def written(tmp_path: Path, **kw: Any) -> Path:
    """A bundle of ``manifest(**kw)`` written under ``tmp_path``."""
    write_bundle(tmp_path / "bundle", MODEL, manifest(**kw), {"00_cat.png": b"png"})
    return tmp_path / "bundle"


def edit_manifest(bundle: Path, change: Callable[[dict], object]) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    change(data)
    (bundle / "manifest.json").write_text(json.dumps(data))


def bundle_copy(source: Path, target: Path, version: str, *, corrupt: bool = False) -> Path:
    """A copy of a bundle under another version; ``corrupt``: a garbage flatbuffer whose sha256 matches,
    so that only loading it can tell."""
    shutil.copytree(source, target)
    data = json.loads((target / "manifest.json").read_text())
    data["version"] = version
    if corrupt:
        garbage = os.urandom((target / "model.tflite").stat().st_size)
        (target / "model.tflite").write_bytes(garbage)
        data["model_sha256"] = hashlib.sha256(garbage).hexdigest()
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def switch(bundles: Path, version: str) -> None:
    """Point ``current`` at a version atomically, as `make deploy` does."""
    link = bundles / "current.new"
    link.symlink_to(version)
    link.replace(bundles / "current")


# Capture ---------------------------------------------------------------------------------------------

QUICK_RETRY = Backoff(0.05, 0.2)


def drain(
    source: Any, stop: threading.Event | None = None, backoff: Backoff = QUICK_RETRY
) -> tuple[FrameMailbox, LiveState, CaptureThread, threading.Event]:
    """Run a capture thread over ``source``; return the mailbox, the live state, the thread and its stop event."""
    stop = stop or threading.Event()
    mailbox, state = FrameMailbox(), LiveState()
    thread = CaptureThread(source, mailbox, state, stop, backoff)
    thread.start()
    return mailbox, state, thread, stop


def take_all(mailbox: FrameMailbox, limit: int = 10_000) -> list:
    """Frames from ``mailbox`` until its source ends or ``limit`` of them."""
    frames = []
    while len(frames) < limit:
        try:
            frame = mailbox.take(timeout=10)
        except SourceEndedError:
            break
        assert frame is not None, "no frame within 10 s"
        frames.append(frame)
    return frames


def digit_jpegs(digits_dir: Path, digit: str, count: int = 5) -> list[bytes]:
    """The first ``count`` images of a digit, enlarged to 128x128 JPEGs as a camera stream would send them."""
    frames = []
    for path in sorted((digits_dir / digit).iterdir())[:count]:
        image = cv2.resize(cv2.imread(str(path)), (128, 128), interpolation=cv2.INTER_NEAREST)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    return frames


# Image folders ---------------------------------------------------------------------------------------


def make_dataset(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    """A class-per-folder dataset of random PNGs, ``counts[class]`` images each."""
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i:03d}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def write_exif_rotated(path: Path) -> None:
    """A 20x10 (w x h) JPEG, white left half, whose EXIF orientation 6 says: turn it 90° clockwise."""
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)


def solid(bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full((16, 16, 3), bgr, np.uint8)


def write_format_zoo(folder: Path) -> None:
    """One image per awkward format, each of one colour (the EXIF one excepted)."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "grey.png"), np.full((16, 16), 200, np.uint8))
    cv2.imwrite(
        str(folder / "rgba.png"),
        np.dstack([solid((0, 255, 0)), np.full((16, 16), 128, np.uint8)]),
    )
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(folder / "palette.png")
    cv2.imwrite(str(folder / "deep.png"), np.full((16, 16), 40000, np.uint16))
    cv2.imwrite(str(folder / "blue.bmp"), solid((255, 0, 0)))
    cv2.imwrite(str(folder / "blue.webp"), solid((255, 0, 0)), [cv2.IMWRITE_WEBP_QUALITY, 101])
    cv2.imwrite(str(folder / "blue.tiff"), solid((255, 0, 0)))
    write_exif_rotated(folder / "rotated.jpg")


def write_corrupt(folder: Path) -> list[str]:
    """Three files with image names that no decoder reads; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    return ["empty.png", "text.png", "truncated.jpg"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image: a decompression bomb's opening."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def blank_png(width: int, height: int) -> bytes:
    """A real, decodable greyscale PNG of zeros, compressed row by row: a few KB that decode to
    ``width * height`` pixels, as the decompression bombs users meet."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def render_template(template: str, payload: bytes) -> str:
    """A Home Assistant MQTT value template rendered as Home Assistant does (Jinja2, sandboxed, with
    ``value`` and ``value_json``); a null renders as ``None``, which Home Assistant reads as unknown."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    text = payload.decode()
    return ImmutableSandboxedEnvironment().from_string(template).render(value=text, value_json=json.loads(text))


# A camera's view, made up: a garage door closed or open, with sensor noise that differs in every frame.
# Frames of one scene are near-copies of each other (the noise averages away in a thumbnail); the two
# scenes differ over the door, about a third of the picture.
GARAGE_WIDTH, GARAGE_HEIGHT = 320, 240


def garage(state: str, seed: int, noise: float = 4.0) -> np.ndarray:
    """A BGR frame of the door ``"closed"`` or ``"open"``; ``seed`` picks the frame's noise."""
    ramp = np.linspace(150, 190, GARAGE_WIDTH, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], GARAGE_HEIGHT, axis=0), 3, axis=2)
    image[:, :, 0] -= 20  # a warm wall
    x0, x1, y0 = 80, 240, 60
    if state == "closed":
        image[y0:, x0:x1] = (205, 205, 200)
        for y in range(y0 + 20, GARAGE_HEIGHT, 30):
            image[y : y + 3, x0:x1] = (150, 150, 145)  # panel seams
    else:
        image[y0:, x0:x1] = (40, 38, 35)  # the dark inside
        image[150:215, 100:220] = (160, 60, 30)  # a car
        for cx in (125, 195):
            cv2.circle(image, (cx, 215), 14, (20, 20, 20), -1)
    rng = np.random.default_rng(seed)
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def two_scene_video(path, frames_per_scene: int = 40, fps: float = 10.0) -> dict[str, list[bytes]]:
    """Write a video of the door closed, then open (MPEG-4), and return each scene's frames as the JPEGs
    an MJPEG camera would send, decoded from the video."""
    states = ["closed"] * frames_per_scene + ["open"] * frames_per_scene
    write_video(path, (garage(state, n) for n, state in enumerate(states)), fps)
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(jpeg(frame))
    capture.release()
    assert len(decoded) == 2 * frames_per_scene, f"{path}: {len(decoded)} frames decoded"
    return {"closed": decoded[:frames_per_scene], "open": decoded[frames_per_scene:]}


def write_legacy_backbone(model: Any, path: Path) -> Path:
    """``model``'s weights in the legacy Keras h5 layout of the files Keras publishes for its applications:
    ``layer_names`` on the root, one group per layer naming its weights in order."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{w.name}".encode() for w in weights]
            group.attrs["weight_names"] = names
            for name, weight in zip(names, weights, strict=True):
                group.create_dataset(name.decode(), data=weight.numpy())
    return path


# The smallest backbone Keras publishes ImageNet weights for: what the transfer-learning tests train.
BACKBONE_WIDTH, BACKBONE_SIZE = 0.35, 96
# Downloads through a proxy that is not there fail at once; loopback stays direct.
NO_NETWORK = {
    "https_proxy": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "no_proxy": "127.0.0.1,localhost",
}


def colour_backbone(width: float, side: int, channels: tuple[int, ...] = (0, 1, 2)) -> Any:
    """A MobileNetV2 backbone without its top whose weights carry each pixel's colour, blurred and subsampled,
    through every block and end in 1280 random non-linear features of it: as informative as a pretrained
    backbone about scenes that differ in colour or brightness, made in a second. (Random weights are not:
    their features fade to a constant over 17 blocks.) ``channels``: the input channels it sees (0 = red)."""
    import keras

    backbone = keras.applications.MobileNetV2(input_shape=(side, side, 3), alpha=width, include_top=False, weights=None)
    names = {layer.name for layer in backbone.layers}
    rng = np.random.default_rng(0)
    for layer in backbone.layers:
        weights = [np.zeros(w.shape, np.float32) for w in layer.weights]
        if isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta, mean, variance: the identity
            weights[0][:], weights[3][:] = 1, 1
            weights[1][:] = 1 if layer.name == "Conv_1_bn" else 0  # keeps the last ReLU6 in its linear range
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            weights[0][:] = 1 / 9  # a box blur
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = weights[0]
            center = kernel.shape[0] // 2
            for c in channels:  # x and -x side by side survive the ReLU6 that follows; the project adds them back
                if layer.name == "Conv1" or layer.name.endswith("_expand"):
                    kernel[center, center, c, c], kernel[center, center, c, c + 3] = 1, -1
                elif layer.name.endswith("_project") and layer.name.replace("_project", "_add") not in names:
                    kernel[0, 0, c, c], kernel[0, 0, c + 3, c] = 1, -1
            if layer.name == "Conv_1":
                kernel[0, 0, :3] = rng.normal(0, 1, kernel.shape[2:])[:3]  # residual blocks stay zero: identities
        layer.set_weights(weights)
    return backbone


def local_device(daemon: Any, wait_seconds: int = 60) -> dict[str, str]:
    """The environment that points deploy/*.sh with HOST=local at a test's daemon: its state folder, its
    reload (SIGHUP), and edgesight with its config to ask it (its address and token) with `edgesight status`."""
    return {
        **os.environ,
        "STATE": str(daemon.bundles.parent),
        "RELOAD": f"kill -HUP {daemon.pid}",
        "REMOTE_EDGESIGHT": str(BIN / "edgesight"),
        "REMOTE_CONFIG": str(daemon.config),
        "WAIT_SECONDS": str(wait_seconds),
    }


# A driveway seen from above, made up: a gate closed, open on an empty drive, or open on a parked car. The car
# is pure blue on the drive's grey, so a backbone that sees only red cannot tell the last two apart.
DRIVEWAY_STATES = ("closed", "empty", "parked")


def driveway(state: str, seed: int) -> np.ndarray:
    """A 320x240 BGR frame of the driveway in ``state``, with sensor noise picked by ``seed``."""
    image = np.full((240, 320, 3), (70, 110, 90), np.float32)  # a hedge
    image[40:, 60:260] = (200, 205, 210) if state == "closed" else (60, 60, 60)
    if state == "parked":
        image[90:200, 110:210] = (220, 60, 60)
    image += np.random.default_rng(seed).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
