"""Real parts the fixtures start: an MJPEG camera on 127.0.0.1, Debian's mosquitto, an MQTT client that
records what arrives, systemd's notification socket, headless Chromium driven by its DevTools protocol,
a device serving its labelled dataset."""

import base64
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.collect.api import DatasetApi
from edge.collect.labelling import Labelling
from edge.collect.sample import Sample
from edge.publish.http import HttpServer
from edge.publish.settings import HttpSettings
from edge.state import LiveState
from tests.helpers import DEADLINE_S, garage, jpeg, wait_for


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


class MjpegServer:
    """An HTTP MJPEG camera (multipart/x-mixed-replace) on 127.0.0.1, served from threads.

    ``stop()`` closes the listening socket and every open stream, as a camera that loses power;
    ``start()`` serves again on the same port. With ``repeat=False`` each stream sends the frames once
    and then stays open and silent; ``sent`` counts the frames written to all streams.
    """

    def __init__(self, frames: list[bytes], fps: float = 25.0, repeat: bool = True) -> None:
        self.frames, self.interval, self.repeat = frames, 1.0 / fps, repeat
        self.port = 0
        self.connections = self.sent = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
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
                    while not stopping.is_set() and (owner.repeat or index < len(owner.frames)):
                        jpeg = owner.frames[index % len(owner.frames)]
                        index += 1
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                        owner.sent += 1
                        stopping.wait(owner.interval)
                    stopping.wait()  # a camera that has nothing new keeps the stream open
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

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._stopping.set()
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """Debian's mosquitto on 127.0.0.1, configured by a file in tmp; persistent, so that sessions and
    queued messages survive a stop and start like a real broker's restart."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.config = directory / "mosquitto.conf"
        self.extra = "allow_anonymous true\n"  # replaced by tests of credentials or TLS before a restart
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"persistence true\npersistence_location {self.directory}/\n"
            "queue_qos0_messages true\nmax_queued_messages 100000\n"
            f"log_dest file {self.directory}/mosquitto.log\nuser root\n" + self.extra
        )
        binary = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if binary is None:
            pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
        self.process = subprocess.Popen([binary, "-c", str(self.config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + DEADLINE_S
        while not accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mosquitto did not start: {self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=DEADLINE_S)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text()[-2000:] if path.exists() else ""


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """A second MQTT client, as Home Assistant would be, recording what arrives on ``topics``.

    Its session is persistent (clean_session false, QoS 1), so messages published while it reconnects
    after a broker restart are queued by the broker and not missed.
    """

    def __init__(self, port: int, topics: list[str], client_id: str = "recorder") -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.topics = topics
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(DEADLINE_S), "the recorder could not subscribe"

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = DEADLINE_S) -> list[Received]:
        return wait_for(lambda: len(self.on(topic)) >= count and self.on(topic), timeout, f"{count} on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
KEYS = {"Enter": ("Enter", 13, "\r"), "Escape": ("Escape", 27, ""), " ": ("Space", 32, " ")}


class Browser:
    """Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``):
    real mouse clicks and key presses, the DOM read back, screenshots; no WebDriver, no websocket library.
    Chromium reads JSON messages from its fd 3 and writes to its fd 4, each ending with a NUL byte."""

    def __init__(self, profile: Path, width: int = 1100, height: int = 760, timeout_s: float = 30.0) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
        self.timeout_s = timeout_s
        to_chrome, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome = os.pipe()
        command = [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome} 4>&{from_chrome}', "chromium", *command],
            pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(profile)},
        )  # fmt: skip
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict[str, Any]:
        """One DevTools command and its result; events that arrive meanwhile are passed over."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail("chromium stopped answering on its DevTools pipe")
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
            if not ready:
                continue
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                pytest.fail("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_until("document.readyState === 'complete'", what=f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, what: str = "the page", timeout: float | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + (timeout or self.timeout_s)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what} ({expression})")
            time.sleep(0.05)

    def click(self, selector: str, *, ctrl: bool = False, shift: bool = False) -> None:
        """A real left click at the middle of the first element ``selector`` matches."""
        box = self.wait_until(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()",
            what=selector,
        )
        modifiers = (2 if ctrl else 0) | (8 if shift else 0)
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1, "modifiers": modifiers},
            )

    def press(self, key: str) -> None:
        """A key press as a keyboard makes it: ``"u"``, ``"3"``, ``"Enter"``, ``"Escape"``, ``" "``."""
        if key in KEYS:
            code, virtual, text = KEYS[key]
        else:
            code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
            virtual, text = ord(key.upper()), key
        event = {"key": key, "code": code, "windowsVirtualKeyCode": virtual, "text": text}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **event})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **event})

    def type(self, text: str) -> None:
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
            self.process.wait(10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, pytest.fail.Exception):
            self.process.kill()
            self.process.wait(10)
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)


class Device:
    """A device's labelled dataset served as the daemon serves it: /api/dataset on 127.0.0.1 behind a bearer
    token, with the config file `edgesight dataset-export` reads on the device.
    ``labelled``: class → number of garage frames labelled into it on this device (``seed`` varies them)."""

    def __init__(self, root: Path, name: str, labelled: dict[str, int], seed: int = 0) -> None:
        self.name, self.root = name, root
        root.mkdir(parents=True, exist_ok=True)
        (root / "http_token").write_text(f"token-of-{name}\n")
        self.labelling = Labelling(root / "state", 50_000_000)
        for n, (label, count) in enumerate(labelled.items()):
            for i in range(count):
                state = "open" if label == "open" else "closed"
                frame = seed * 1000 + n * 100 + i
                sample = Sample(captured=1764061200.0 + frame, reason="interval", device=name, frame=frame)
                item = self.labelling.inbox.put(jpeg(garage(state, frame)), sample)
                self.labelling.label([item.id], label)
        settings = HttpSettings(port=0, token_file=str(root / "http_token"))
        self.server = HttpServer(settings, LiveState(name), dataset=DatasetApi(self.labelling))
        self.server.start()
        self.closed = False
        self.config = root / "edgesight.toml"
        port = self.server.url.rsplit(":", 1)[1]
        self.config.write_text(
            f'[source]\nuri = "0"\n[collect]\nstate_dir = "state"\n[http]\nport = {port}\ntoken_file = "http_token"\n'
        )

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return f"token-of-{self.name}"

    def hashes(self) -> dict[str, str]:
        return self.labelling.dataset.hashes()

    def close(self) -> None:
        """Stop serving, as a daemon that stops; closing again does nothing."""
        if not self.closed:
            self.closed = True
            self.server.close()
