"""7. Training input: `edgesight-train fit`'s steps per second against a bare ``model.fit`` of the same model,
compiled the same way, on the same prepared pixels held in memory as arrays (no augmentation, no input
pipeline of ours). The difference is what our input side costs: reading the cache, shuffling, augmenting.

``python -m bench.training --data DIR --model resnet8 --size 32 --rounds 3`` is a TensorFlow process of its
own: per round it runs the bare fit, then ``train.fit.fit`` with augmentation on, and prints one JSON line.
A step timer (a Keras callback) times the training steps of every epoch after the first (the first
traces the graph); validation and checkpoints, between epochs, are left out.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # TensorFlow is imported late, and only in this measured process
    import keras

    from train.config import FitConfig

CLASSES = 10


def write_dataset(out: Path, size: int, per_class: int) -> Path:
    """``per_class`` JPEGs of ``size``² per class, textured so that decoding and training do real work."""
    done = out / ".written"
    if done.is_file():
        return out
    rng = np.random.default_rng(0)
    for label in range(CLASSES):
        folder = out / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            coarse = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
            image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
            cv2.circle(image, (size // 2, size // 2), size // 4, (label * 25, 255 - label * 25, 128), -1)
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    done.touch()
    return out


def step_timer() -> "keras.callbacks.Callback":
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall and CPU time per training step, per epoch after the first."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[tuple[float, float]] = []  # (steps per second, CPU ms per step)
            self._marks: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._marks = []

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._marks.append((time.perf_counter(), time.process_time()))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == 0 or len(self._marks) < 3:
                return
            (wall0, cpu0), (wall1, cpu1) = self._marks[0], self._marks[-1]
            steps = len(self._marks) - 1
            self.epochs.append((steps / (wall1 - wall0), (cpu1 - cpu0) / steps * 1000))

        def summary(self) -> dict:
            return {
                "steps_per_s": statistics.median(rate for rate, _ in self.epochs),
                "cpu_ms_per_step": statistics.median(cpu for _, cpu in self.epochs),
                "epochs_timed": len(self.epochs),
            }

    return StepTimer()


def bare(config: "FitConfig", pixels: np.ndarray, labels: np.ndarray) -> dict:
    """``model.fit`` on float arrays in memory: the same model, compile and batch size; nothing else."""
    import keras

    from train.fit import compile_model
    from train.models import build_model

    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, pixels.shape[1:], CLASSES, config.model_options)
    compile_model(model, config, int(np.ceil(len(pixels) / config.batch_size)))
    timer = step_timer()
    y = np.eye(CLASSES, dtype=np.float32)[labels]
    model.fit(pixels, y, batch_size=config.batch_size, epochs=config.epochs, callbacks=[timer], verbose=0)
    return timer.summary()


def ours(config: "FitConfig") -> dict:
    from train.fit import fit

    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        fit(replace(config, out=out), callbacks=[timer])
    return timer.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="where the generated dataset is (kept)")
    parser.add_argument("--cache", type=Path, required=True, help="the preprocessed-image cache")
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0, help="the model's width multiplier")
    parser.add_argument("--images", type=int, default=300, help="images per class")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = fit's default")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    # Keras prints its progress to stdout: that goes to stderr, stdout keeps one JSON line per round.
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from train.cache import prepared
    from train.config import FitConfig
    from train.data import discover, split
    from train.fit import load_split

    data = write_dataset(args.data, args.size, args.images)
    config = FitConfig(
        data=str(data), out="", model=args.model, size=args.size, width=args.width, epochs=args.epochs,
        cache_dir=str(args.cache), patience=args.epochs, **({"batch_size": args.batch_size} if args.batch_size else {}),
    )  # fmt: skip
    dataset = discover(data)
    images = prepared(dataset, config.preprocess, args.cache)
    rows, labels = load_split(dataset, split(dataset, config.seed, config.val_fraction, config.test_fraction), images)[
        "train"
    ]
    in_memory = np.asarray(images.pixels[rows], dtype=np.float32)
    for index in range(args.rounds):
        found: dict[str, object] = {"round": index, "batch_size": config.batch_size, "train_images": len(rows)}
        found["bare"] = bare(config, in_memory, labels)
        found["fit"] = ours(config)
        print(json.dumps(found), file=results, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
