"""Real parts for the publishing tests: a mosquitto broker on 127.0.0.1, an MQTT recorder, a classifier."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import free_port, wait_for

DEADLINE_S = 20.0


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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(directory, free_port())
    broker.start()
    yield broker
    broker.stop()


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


@pytest.fixture
def recorder_factory(mosquitto: Mosquitto) -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(topics: list[str], client_id: str = "recorder") -> Recorder:
        recorder = Recorder(mosquitto.port, topics, client_id)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


@pytest.fixture(scope="session")
def digits_classifier(digits_bundle: Path):
    from edge.bundle import load_bundle
    from edge.classifier import Classifier

    return Classifier(load_bundle(digits_bundle), num_threads=1, top_k=3)


@pytest.fixture(scope="session")
def digit_images(digits_dir: Path) -> dict[str, list[Path]]:
    """A few real digit images per class, from the session's digits dataset."""
    return {d.name: sorted(d.iterdir())[:5] for d in sorted(digits_dir.iterdir()) if d.is_dir()}
