"""A training run as read back from its directory, and its images as the model sees them."""

import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from edge.errors import EXIT_NO_INPUT, EdgesightError
from train.cache import prepared
from train.config import FitConfig, run_config_from_dict
from train.data import Example, class_of, discover, read_examples

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
MODEL_FILE = "model.keras"
BEST_FILE = "best.keras"
LAST_FILE = "last.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class Run:
    """A training run, as read back from its directory."""

    path: Path
    config: FitConfig
    classes: tuple[str, ...]
    split: dict[str, str]  # relative path -> train/val/test
    dataset: dict

    def examples(self, which: str) -> list[Example]:
        root = Path(self.config.data)
        index = {name: i for i, name in enumerate(self.classes)}
        explicit = self.dataset.get("explicit_split", False)
        return [
            Example(root / relpath, relpath, index[class_of(relpath, explicit)])
            for relpath, part in sorted(self.split.items())
            if part == which
        ]

    def load_model(self) -> keras.Model:
        return keras.models.load_model(self.path / MODEL_FILE)


def load_run(path: Path) -> Run:
    path = Path(path)
    for name in (CONFIG_FILE, SPLIT_FILE, MODEL_FILE, DATASET_FILE):
        if not (path / name).is_file():
            raise EdgesightError(
                f"{path}: not a finished run (no {name}); train one with `edgesight-train fit`", EXIT_NO_INPUT
            )
    config = run_config_from_dict(json.loads((path / CONFIG_FILE).read_text()), str(path / CONFIG_FILE))
    dataset = json.loads((path / DATASET_FILE).read_text())
    split_map = json.loads((path / SPLIT_FILE).read_text())
    return Run(path, config, tuple(dataset["classes"]), split_map, dataset)


def split_pixels(run: Run, which: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Prepared uint8 pixels, labels and unreadable paths of one split: from the cache when the data is unchanged."""
    examples = run.examples(which)
    try:
        dataset = discover(Path(run.config.data), min_per_class=1)
    except EdgesightError:
        dataset = None
    if dataset is not None and dataset.fingerprint == run.dataset["fingerprint"]:
        cache = Path(run.dataset["cache"]).parent if run.dataset.get("cache") else None
        images = prepared(dataset, run.config.preprocess, cache)
        row = {e.relpath: i for i, e in enumerate(dataset.examples)}
        rows = np.asarray([row[e.relpath] for e in examples if images.readable[row[e.relpath]]], dtype=np.int64)
        bad = [e.relpath for e in examples if not images.readable[row[e.relpath]]]
        labels = np.asarray([e.label for e in examples if images.readable[row[e.relpath]]], dtype=np.int64)
        return np.asarray(images.pixels[np.sort(rows)])[np.argsort(np.argsort(rows))], labels, bad
    log.warning("%s changed since the run was trained: decoding its %s files directly", run.config.data, which)
    read = read_examples(examples, run.config.preprocess)
    return read.good_pixels, read.labels, read.unreadable


def versions() -> dict[str, str]:
    import cv2
    import tensorflow as tf

    from edge import __version__

    return {
        "edgesight": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
