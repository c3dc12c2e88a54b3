"""Training, as a recipe: data, model, compile, fit, evaluate, save the run directory."""

import csv
import json
import logging
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.preprocess import PreprocessSpec
from train.data import SPLITS, Dataset, Example, discover, load_arrays, split
from train.models import build_model

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class FitConfig:
    """Everything that determines a run; written resolved into the run directory."""

    data: str
    out: str
    model: str = "tiny"
    size: int = 64
    color: str = "rgb"
    resize: str = "squash"
    interpolation: str = "area"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 6
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec(
            height=self.size, width=self.size, color=self.color, resize=self.resize, interpolation=self.interpolation
        )


@dataclass(frozen=True)
class Run:
    """A finished training run, as read back from its directory."""

    path: Path
    config: FitConfig
    classes: tuple[str, ...]
    split: dict[str, str]  # relative path -> train/val/test
    dataset: dict

    def examples(self, which: str) -> list[Example]:
        root = Path(self.config.data)
        index = {name: i for i, name in enumerate(self.classes)}
        return [
            Example(root / relpath, relpath, index[relpath.split("/")[0]])
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
    config = FitConfig(**json.loads((path / CONFIG_FILE).read_text()))
    dataset = json.loads((path / DATASET_FILE).read_text())
    split_map = json.loads((path / SPLIT_FILE).read_text())
    return Run(path, config, tuple(dataset["classes"]), split_map, dataset)


def _arrays(dataset: Dataset, assignment: dict[str, str], spec: PreprocessSpec) -> dict[str, tuple]:
    by_split = {part: [e for e in dataset.examples if assignment[e.relpath] == part] for part in SPLITS}
    bar = keras.utils.Progbar(len(dataset.examples), unit_name="image", verbose=1 if sys.stderr.isatty() else 2)
    done = 0
    arrays = {}
    for part in SPLITS:
        arrays[part] = load_arrays(by_split[part], spec, progress=lambda n, base=done: bar.update(base + n))
        done += len(by_split[part])
    return arrays


def fit(config: FitConfig) -> Run:
    """Train a model on ``config.data`` and write the run directory ``config.out``."""
    out = Path(config.out)
    spec = config.preprocess
    problems = spec.problems()
    if problems:
        raise EdgesightError(f"preprocessing: {problems[0]}", EXIT_DATA)

    # Data: every image prepared by the device's own preprocessing.
    dataset = discover(Path(config.data))
    assignment = split(dataset, config.seed, config.val_fraction, config.test_fraction)
    log.info("%d images in %d classes from %s", len(dataset.examples), len(dataset.classes), dataset.root)
    arrays = _arrays(dataset, assignment, spec)
    (x_train, y_train, _), (x_val, y_val, _), (x_test, y_test, _) = (arrays[p] for p in SPLITS)
    skipped = [path for part in SPLITS for path in arrays[part][2]]
    if len(x_train) == 0 or len(x_val) == 0:
        raise EdgesightError(f"{config.data}: too few readable images to train and validate", EXIT_DATA)
    log.info("split: %d train, %d val, %d test, %d skipped", len(x_train), len(x_val), len(x_test), len(skipped))

    # Model.
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, (spec.height, spec.width, spec.channels), len(dataset.classes))
    steps = config.epochs * max(1, int(np.ceil(len(x_train) / config.batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    # Fit, keeping the best epoch by validation loss.
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE)),
    ]
    model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )

    # Evaluate on the held-out test split.
    metrics: dict[str, float | int] = {"test_images": len(x_test)}
    if len(x_test):
        predictions = model.predict(x_test, batch_size=128, verbose=0).argmax(axis=1)
        metrics["test_accuracy"] = float((predictions == y_test).mean())
        log.info("test accuracy (float): %.4f on %d images", metrics["test_accuracy"], len(x_test))

    # Save everything needed to resume, quantize and audit the run.
    model.save(out / MODEL_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
    (out / SPLIT_FILE).write_text(json.dumps(assignment, indent=0, sort_keys=True) + "\n")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    dataset_info = {
        "root": str(dataset.root),
        "fingerprint": dataset.fingerprint,
        "classes": list(dataset.classes),
        "images": len(dataset.examples),
        "split_counts": {p: len(arrays[p][0]) for p in SPLITS},
        "skipped": skipped,
        "versions": versions(),
    }
    (out / DATASET_FILE).write_text(json.dumps(dataset_info, indent=2) + "\n")
    _check_history(out / HISTORY_FILE)
    return load_run(out)


def _check_history(path: Path) -> None:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if rows:
        best = min(rows, key=lambda r: float(r["val_loss"]))
        log.info(
            "best epoch %s: val_loss %.4f, val_accuracy %.4f",
            best["epoch"],
            float(best["val_loss"]),
            float(best["val_accuracy"]),
        )


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
