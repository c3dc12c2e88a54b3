"""Plain helpers shared by the tests; tests import them from here, never from conftest.py or another test."""

import hashlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
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


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def status_or_none(url: str) -> Any:
    try:
        return get_json(url)
    except OSError:
        return None


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
