"""The classical road: OpenCV HOG features and a linear classifier from scikit-learn, on the run's split.

It trains on the same prepared images and split as the CNN, so ``evaluate`` can show beside the CNN
what the CNN buys. Written into ``RUN/baseline/``: ``model.joblib`` and ``metrics.json``.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from edge.errors import EXIT_DATA, EdgesightError
from train.run import Run, load_run, split_pixels

log = logging.getLogger(__name__)

BASELINE_DIR = "baseline"
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
HOG_SIDE = 64  # HOG runs on a fixed 64×64 greyscale view
HOG_CELL = 8
HOG_BINS = 9
COLOR_BINS = 8  # per channel, for RGB inputs
C_GRID = (0.01, 0.1, 1.0)  # inverse regularization strengths tried on the validation split


@dataclass(frozen=True)
class BaselineResult:
    path: Path
    val_accuracy: float
    test_accuracy: float
    regularization: float
    features: int


def hog(grey: np.ndarray) -> np.ndarray:
    """Dalal-Triggs HOG of a HOG_SIDE² greyscale image: 8-px cells, 2×2-cell blocks (L2-Hys), 9 unsigned bins.

    Written on OpenCV's gradient primitives because OpenCV 5 moved ``HOGDescriptor`` out of the main package.
    """
    image = grey.astype(np.float32)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=1)
    magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    bins = (np.mod(angle, 180.0) / (180.0 / HOG_BINS)).astype(np.int64) % HOG_BINS
    cells = HOG_SIDE // HOG_CELL
    cell_of = (np.arange(HOG_SIDE) // HOG_CELL)[:, None] * cells + (np.arange(HOG_SIDE) // HOG_CELL)[None, :]
    histogram = np.bincount((cell_of * HOG_BINS + bins).ravel(), magnitude.ravel(), cells * cells * HOG_BINS)
    histogram = histogram.reshape(cells, cells, HOG_BINS)
    blocks = np.concatenate(
        [histogram[:-1, :-1], histogram[1:, :-1], histogram[:-1, 1:], histogram[1:, 1:]], axis=2
    ).reshape(-1, 4 * HOG_BINS)
    blocks /= np.sqrt((blocks**2).sum(axis=1, keepdims=True) + 1e-6)
    blocks = np.minimum(blocks, 0.2)
    blocks /= np.sqrt((blocks**2).sum(axis=1, keepdims=True) + 1e-6)
    return blocks.ravel().astype(np.float32)


def features(pixels: np.ndarray) -> np.ndarray:
    """HOG (plus a colour histogram for RGB) of prepared uint8 pixels (n, h, w, c): float32 (n, features)."""
    rows = []
    for image in pixels:
        grey = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(np.ascontiguousarray(grey), (HOG_SIDE, HOG_SIDE), interpolation=cv2.INTER_LINEAR)
        parts = [hog(grey)]
        if image.shape[-1] == 3:
            histogram = [
                np.bincount(image[..., c].reshape(-1) // (256 // COLOR_BINS), minlength=COLOR_BINS) for c in range(3)
            ]
            parts.append(np.concatenate(histogram).astype(np.float32) / image[..., 0].size)
        rows.append(np.concatenate(parts))
    return np.stack(rows).astype(np.float32)


def baseline_dir(run: Run) -> Path:
    return run.path / BASELINE_DIR


def train_baseline(data_dir: Path, run_dir: Path) -> BaselineResult:
    """Fit the HOG + logistic-regression baseline on the run's train split, C picked on its val split."""
    run = load_run(run_dir)
    if Path(data_dir).resolve() != Path(run.config.data).resolve():
        raise EdgesightError(
            f"{data_dir}: the run {run.path} was trained on {run.config.data}; the baseline uses the same data",
            EXIT_DATA,
        )
    (x_train, y_train, _), (x_val, y_val, _), (x_test, y_test, _) = (
        split_pixels(run, part) for part in ("train", "val", "test")
    )
    if len(x_train) == 0 or len(x_val) == 0:
        raise EdgesightError(f"{run.path}: the split has no readable train or val images", EXIT_DATA)
    f_train, f_val = features(x_train), features(x_val)
    best: tuple[float, float, Pipeline] | None = None
    for c in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(f_train, y_train)
        accuracy = float((model.predict(f_val) == y_val).mean())
        log.info("baseline C=%g: val accuracy %.4f", c, accuracy)
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    assert best is not None
    val_accuracy, c, model = best
    test_accuracy = float((model.predict(features(x_test)) == y_test).mean()) if len(x_test) else float("nan")
    out = baseline_dir(run)
    out.mkdir(exist_ok=True)
    joblib.dump(model, out / MODEL_FILE)
    result = BaselineResult(out, val_accuracy, test_accuracy, c, f_train.shape[1])
    record = {
        "classifier": "HOG + colour histogram → StandardScaler → LogisticRegression",
        "C": c,
        "features": f_train.shape[1],
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "classes": list(run.classes),
    }
    (out / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return result


def load_baseline(run: Run) -> Pipeline | None:
    path = baseline_dir(run) / MODEL_FILE
    return joblib.load(path) if path.is_file() else None
