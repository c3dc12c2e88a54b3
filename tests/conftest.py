"""Shared real parts: the digits dataset, a model trained on it once per session, its int8 bundle, a running daemon."""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--vm", action="store_true", help="boot the arm64 VM and run the system test (tests/vm)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The system test boots a VM for minutes: only `make system-test` (--vm) runs it."""
    if config.getoption("--vm"):
        return
    skip = pytest.mark.skip(reason="the system test: make system-test")
    for item in items:
        if "vm" in item.keywords:
            item.add_marker(skip)


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


def bundle_copy(source: Path, target: Path, version: str, *, corrupt: bool = False) -> Path:
    """A copy of a bundle under another version; ``corrupt``: a garbage flatbuffer whose sha256 matches,
    so that only loading it can tell."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    if corrupt:
        garbage = os.urandom((target / "model.tflite").stat().st_size)
        (target / "model.tflite").write_bytes(garbage)
        manifest["model_sha256"] = hashlib.sha256(garbage).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that records every message the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.setblocking(False)
        self.messages: list[str] = []

    def received(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.socket.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def fields(self) -> list[str]:
        return [field for message in self.received() for field in message.split("\n")]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def status_or_none(url: str) -> dict | None:
    try:
        return get_json(url)
    except OSError:
        return None


def switch(bundles: Path, version: str) -> None:
    """Point ``current`` at a version atomically, as `make deploy` does."""
    link = bundles / "current.new"
    link.symlink_to(version)
    link.replace(bundles / "current")


@pytest.fixture
def daemon(tmp_path, digits_bundle, digits_dir):
    """The daemon on a looping image folder, with a notify socket, a watchdog and HTTP on loopback."""
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    bundle_copy(digits_bundle, bundles / "1.0.0", "1.0.0")
    switch(bundles, "1.0.0")
    port = free_port()
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{digits_dir / "4"}"\nloop = true\nmax_fps = 30\n'
        f'[model]\npath = "{bundles / "current"}"\nthreads = 1\n'
        f'[output]\njsonl = "{tmp_path / "results.jsonl"}"\n'
        f"[http]\nport = {port}\n"
    )
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "3000000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    process.notify, process.bundles, process.url = notify, bundles, f"http://127.0.0.1:{port}"
    process.results = tmp_path / "results.jsonl"
    yield process
    process.kill()
    process.wait(30)


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run one of the installed console scripts as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
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


CAMERA_SIZES = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080), "odd": (1001, 563)}


@pytest.fixture(scope="session")
def camera_frames() -> dict[str, list]:
    """BGR frames at camera sizes (and an odd one): smooth texture with hard edges and text, and noise."""
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


SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def car_video() -> Path:
    """A real H.264 clip (768x432, 12.5 fps, 377 frames); see ../shared/data/README.md."""
    path = SHARED_DATA / "car-detection.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real-video tests need the shared data folder beside the project")
    return path


class MjpegServer:
    """An HTTP MJPEG camera (multipart/x-mixed-replace) on 127.0.0.1, served from threads.

    ``stop()`` closes the listening socket and every open stream, as a camera that loses power;
    ``start()`` serves again on the same port.
    """

    def __init__(self, frames: list[bytes], fps: float = 25.0) -> None:
        self.frames, self.interval = frames, 1.0 / fps
        self.port = 0
        self.connections = 0
        self._server = None
        self._thread = None
        self._stopping = None
        self._clients: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        import socketserver
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner, stopping = self, threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.connections += 1
                owner._clients.add(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not stopping.is_set():
                        jpeg = owner.frames[index % len(owner.frames)]
                        index += 1
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        stopping.wait(owner.interval)
                except OSError:
                    pass  # the client went away, or stop() cut the connection
                finally:
                    owner._clients.discard(self.connection)

            def log_message(self, *args: object) -> None:
                return None

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = False  # server_close() joins the stream threads

        self._stopping = stopping
        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()
        assert isinstance(self._server, socketserver.TCPServer)

    def stop(self) -> None:
        import socket

        if self._server is None:
            return
        self._server.shutdown()
        self._stopping.set()
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None


@pytest.fixture
def mjpeg_server(request: pytest.FixtureRequest):
    """A factory: ``serve(jpeg_frames, fps)`` starts an MJPEG server; every one is stopped at teardown."""
    servers: list[MjpegServer] = []

    def serve(frames: list[bytes], fps: float = 25.0) -> MjpegServer:
        server = MjpegServer(frames, fps)
        server.start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


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
