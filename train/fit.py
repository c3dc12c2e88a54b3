"""Training, as a recipe: data, model, compile, fit, evaluate, save the run directory.

The run directory is written as training goes: ``config.json`` and ``split.json`` first, then
``history.csv``, ``last.keras`` (to resume) and ``best.keras`` after every epoch, and at the end
``model.keras`` (the best epoch), ``dataset.json`` and ``metrics.json``.
"""

import csv
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np

from edge.errors import EXIT_CONFIG, EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from train.cache import PreparedImages, prepared
from train.config import FitConfig, check, run_config_from_dict
from train.data import (
    IMBALANCE_RATIO,
    SPLITS,
    Dataset,
    class_counts,
    class_weights,
    discover,
    duplicates,
    imbalance,
    split,
)
from train.models import build_model
from train.pipeline import Batches
from train.run import (
    BEST_FILE,
    CONFIG_FILE,
    DATASET_FILE,
    HISTORY_FILE,
    LAST_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SPLIT_FILE,
    Run,
    load_run,
    versions,
)
from train.transfer import TransferResult, pretrained_weights, train_transfer, uses_backbone

log = logging.getLogger(__name__)


def _progress_bar(total: int) -> keras.utils.Progbar:
    return keras.utils.Progbar(total, unit_name="image", verbose=1 if sys.stderr.isatty() else 2)


def load_split(
    dataset: Dataset, assignment: dict[str, str], images: PreparedImages
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Row indices into the prepared images and labels, per split, readable images only."""
    labels = np.asarray([e.label for e in dataset.examples], dtype=np.int64)
    parts = np.asarray([assignment.get(e.relpath, "") for e in dataset.examples])
    return {p: (np.flatnonzero((parts == p) & images.readable), labels[(parts == p) & images.readable]) for p in SPLITS}


def compile_model(model: keras.Model, config: FitConfig, steps_per_epoch: int) -> None:
    """Adam on a cosine schedule with a linear warm-up, label-smoothed cross-entropy."""
    warmup = min(config.warmup_epochs, config.epochs - 1) * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config.learning_rate,
        decay_steps=config.epochs * steps_per_epoch - warmup,
        alpha=0.05,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


def fit(
    config: FitConfig,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    dataset: Dataset | None = None,
) -> Run:
    """Train a model on ``config.data`` and write the run directory ``config.out``.

    ``callbacks`` are Keras callbacks of the caller's (the benchmark times steps with one). ``dataset`` is
    ``config.data`` already discovered: the command line looks at the folder before Keras loads, so a wrong
    path or an empty class fails at once rather than after seconds of imports."""
    out = Path(config.out)
    check(config)

    if resume and uses_backbone(config):
        raise EdgesightError(
            f"{out}: a transfer-learning run does not resume; run it again without --resume (its backbone"
            " features are cached, so the head retrains in seconds)",
            EXIT_CONFIG,
        )
    if uses_backbone(config):
        pretrained_weights(config)  # downloaded (or missing) before any image is prepared, not after

    # Data: every image prepared once by the device's own preprocessing, cached on disk.
    dataset = dataset or discover(Path(config.data), config.min_per_class)
    assignment = split(dataset, config.seed, config.val_fraction, config.test_fraction)
    log.info("%d images in %d classes from %s", len(dataset.examples), len(dataset.classes), dataset.root)
    bar = _progress_bar(len(dataset.examples))
    images = prepared(dataset, config.preprocess, Path(config.cache_dir) if config.cache_dir else None, bar.update)
    rows = load_split(dataset, assignment, images)
    (train_rows, y_train), (val_rows, y_val), (test_rows, y_test) = (rows[p] for p in SPLITS)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise EdgesightError(f"{config.data}: too few readable images to train and validate", EXIT_DATA)
    report = _data_report(dataset, assignment, images, y_train)
    log.info(
        "split: %d train, %d val, %d test, %d unreadable",
        len(train_rows),
        len(val_rows),
        len(test_rows),
        len(images.unreadable),
    )

    # Model: new, or the last checkpoint of an interrupted run.
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    initial_epoch, best_so_far = _resume_point(out) if resume else (0, None)
    if initial_epoch:
        log.info("resuming %s after epoch %d", out, initial_epoch)
        model = keras.models.load_model(out / LAST_FILE)
    else:
        spec = config.preprocess
        model = build_model(
            config.model, (spec.height, spec.width, spec.channels), len(dataset.classes), config.model_options
        )
        compile_model(model, config, int(np.ceil(len(train_rows) / config.batch_size)))
        (out / SPLIT_FILE).write_text(json.dumps(assignment, indent=0, sort_keys=True) + "\n")
    # Rewritten on resume too: `--resume --epochs N` changes what the run is trained for.
    (out / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
    log.info("model %s: %d parameters", config.model, model.count_params())

    # Fit: checkpoint every epoch (resume) and the best by validation loss; stop when it stops improving.
    # From a pretrained backbone: its head on cached features first, then optionally its top blocks.
    classes = len(dataset.classes)
    weights = report["class_weights"] if config.balance else None
    train = Batches(
        images.pixels,
        train_rows,
        y_train,
        classes,
        config.batch_size,
        class_weights=weights,
        augment=config.augmentation,
        seed=config.seed,
        epoch=initial_epoch,
    )
    val = Batches(images.pixels, val_rows, y_val, classes, config.batch_size)
    callbacks = [
        *callbacks,
        keras.callbacks.ModelCheckpoint(out / LAST_FILE),
        keras.callbacks.ModelCheckpoint(out / BEST_FILE, save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.EarlyStopping(patience=config.patience),
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=initial_epoch > 0),
    ]
    transfer: TransferResult | None = None
    if uses_backbone(config):
        transfer = train_transfer(model, config, images, train, val, out / BEST_FILE, out / HISTORY_FILE)
    elif initial_epoch < config.epochs:
        model.fit(
            train,
            validation_data=val,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    model = keras.models.load_model(out / BEST_FILE)

    # Evaluate the best epoch on the held-out test split.
    metrics: dict = {"test_images": len(test_rows)}
    if transfer is not None:
        metrics["transfer"] = asdict(transfer)
    if len(test_rows):
        test = Batches(images.pixels, test_rows, y_test, classes, 128)
        predictions = model.predict(test, verbose=0).argmax(axis=1)
        metrics["test_accuracy"] = float((predictions == y_test).mean())
        log.info("test accuracy (float): %.4f on %d images", metrics["test_accuracy"], len(test_rows))

    # Save what quantize, evaluate and an auditor need.
    shutil.copyfile(out / BEST_FILE, out / MODEL_FILE)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    dataset_info = {
        "root": str(dataset.root),
        "fingerprint": dataset.fingerprint,
        "classes": list(dataset.classes),
        "images": len(dataset.examples),
        "explicit_split": dataset.explicit_split,
        "split_counts": {p: len(rows[p][0]) for p in SPLITS},
        **report,
        "cache": str(images.path),
        "versions": versions(),
    }
    (out / DATASET_FILE).write_text(json.dumps(dataset_info, indent=2) + "\n")
    _log_best_epoch(out / HISTORY_FILE)
    return load_run(out)


def _data_report(dataset: Dataset, assignment: dict[str, str], images: PreparedImages, y_train: np.ndarray) -> dict:
    """Counts, class weights, unreadable files and duplicates, each also logged as a warning when it matters."""
    counts = class_counts(y_train, len(dataset.classes))
    ratio = imbalance(counts)
    if ratio >= IMBALANCE_RATIO:
        smallest = dataset.classes[int(np.argmin(counts))]
        log.warning(
            "classes are imbalanced (largest/smallest = %.1f, smallest: %r with %d training images);"
            " training with class weights",
            ratio,
            smallest,
            min(counts),
        )
    if images.unreadable:
        log.warning("%d unreadable file(s) skipped: %s", len(images.unreadable), ", ".join(images.unreadable[:5]))
    groups = duplicates(dataset, assignment)
    leaking = [g for g in groups if g.crosses_splits]
    if groups:
        log.warning(
            "%d group(s) of identical files, %d across splits (e.g. %s)",
            len(groups),
            len(leaking),
            " = ".join(groups[0].relpaths),
        )
    return {
        "class_counts": dict(zip(dataset.classes, counts, strict=True)),
        "class_weights": class_weights(y_train, len(dataset.classes)),
        "imbalance": round(ratio, 3),
        "unreadable": list(images.unreadable),
        "duplicates": [asdict(g) for g in groups],
        "duplicates_across_splits": len(leaking),
    }


def _resume_point(out: Path) -> tuple[int, float | None]:
    """Epochs already done and the best validation loss so far, from the run's history."""
    if not (out / LAST_FILE).is_file() or not (out / HISTORY_FILE).is_file():
        raise EdgesightError(f"{out}: nothing to resume (no {LAST_FILE}); start it without --resume", EXIT_NO_INPUT)
    with (out / HISTORY_FILE).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return 0, None
    return int(rows[-1]["epoch"]) + 1, min(float(r["val_loss"]) for r in rows)


def resume_config(out: Path, epochs: int | None) -> FitConfig:
    """The config of an interrupted run, with more epochs if asked."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise EdgesightError(f"{out}: nothing to resume (no {CONFIG_FILE})", EXIT_NO_INPUT)
    config = run_config_from_dict(json.loads(path.read_text()), str(path))
    return replace(config, epochs=epochs) if epochs else config


def _log_best_epoch(path: Path) -> None:
    if not path.is_file():  # a transfer-learning run without fine-tuning has no epochs
        return
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
