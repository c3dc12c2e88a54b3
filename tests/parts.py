"""Real parts the fixtures start: an MJPEG camera on 127.0.0.1, Debian's mosquitto, an MQTT client that
records what arrives, systemd's notification socket."""

import contextlib
import json
import os
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

from tests.helpers import DEADLINE_S, wait_for


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
