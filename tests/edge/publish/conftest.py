"""Real parts for the publishing tests: a mosquitto broker on 127.0.0.1, an MQTT recorder, a classifier."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.parts import Mosquitto, Recorder


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(directory, free_port())
    broker.start()
    yield broker
    broker.stop()


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
