"""Evaluation of a run or a bundle on held-out images: float, int8 and the classical baseline side by side.

The float model runs in Keras on the prepared pixels; the int8 model through the device's own code
path (``edge.classifier``) on the original files; the baseline on HOG features of the same pixels.
Metrics come from scikit-learn; ``train.report`` writes them as metrics.json, report.md and report.html.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from edge.bundle import MANIFEST_FILE, load_bundle
from edge.classifier import Classifier
from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.images import read_image
from edge.postprocess import scores
from edge.preprocess import PreprocessSpec, prepare
from train.data import Example, discover
from train.run import CONFIG_FILE, Run, load_run

log = logging.getLogger(__name__)

CALIBRATION_BINS = 10
GALLERY_SIZE = 24


@dataclass(frozen=True)
class Sources:
    """What is being evaluated: a run (float model, baseline), a bundle (int8), or both."""

    run: Run | None
    bundle: Path | None
    classes: tuple[str, ...]
    spec: PreprocessSpec


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    images: list[np.ndarray]  # prepared pixels, for the gallery
    relpaths: list[str]
    labels: np.ndarray
    probabilities: dict[str, np.ndarray]  # model name -> (n, classes)
    metrics: dict[str, Any]
    unreadable: list[str] = field(default_factory=list)


def resolve(target: Path, bundle: Path | None = None) -> Sources:
    """A run directory (with the bundle `quantize` recorded, or ``bundle``) or a bundle (with its run, if present)."""
    target = Path(target)
    run = None
    if (target / CONFIG_FILE).is_file():
        run = load_run(target)
        if bundle is None and (target / "quantize.json").is_file():
            recorded = json.loads((target / "quantize.json").read_text()).get("bundle")
            bundle = Path(recorded) if recorded and (Path(recorded) / MANIFEST_FILE).is_file() else None
    elif (target / MANIFEST_FILE).is_file():
        bundle = target
        recorded = load_bundle(target).manifest.training.get("run")
        if recorded and (Path(recorded) / CONFIG_FILE).is_file():
            run = load_run(Path(recorded))
    else:
        raise EdgesightError(f"{target}: neither a run directory nor a bundle", EXIT_NO_INPUT)
    manifest = load_bundle(bundle).manifest if bundle else None
    if run and manifest and tuple(manifest.labels) != run.classes:
        raise EdgesightError(f"{bundle}: its labels differ from the run {run.path}'s classes", EXIT_DATA)
    if run:
        return Sources(run, bundle, run.classes, run.config.preprocess)
    assert manifest is not None, "a target that is no run directory is a bundle"
    return Sources(run, bundle, tuple(manifest.labels), manifest.preprocess)


def examples_to_score(sources: Sources, data_dir: Path | None) -> list[Example]:
    """The run's test split, or every image of ``data_dir`` whose class folder names a known label."""
    if data_dir is None:
        if sources.run is None:
            raise EdgesightError(f"{sources.bundle}: a bundle without its run needs DATA_DIR to evaluate on", EXIT_DATA)
        return sources.run.examples("test")
    dataset = discover(Path(data_dir), min_per_class=1)
    index = {name: i for i, name in enumerate(sources.classes)}
    unknown = [name for name in dataset.classes if name not in index]
    if unknown:
        raise EdgesightError(f"{data_dir}: class folder {unknown[0]!r} is not one of the model's labels", EXIT_DATA)
    return [Example(e.path, e.relpath, index[dataset.classes[e.label]]) for e in dataset.examples]


def evaluate(target: Path, data_dir: Path | None = None, bundle: Path | None = None, top_k: int = 3) -> Evaluation:
    sources = resolve(target, bundle)
    examples = examples_to_score(sources, data_dir)
    originals, pixels, labels, unreadable, relpaths = [], [], [], [], []
    for example in examples:
        image = read_image(example.path)
        if image is None:
            unreadable.append(example.relpath)
            continue
        originals.append(image)
        pixels.append(prepare(image, sources.spec))
        labels.append(example.label)
        relpaths.append(example.relpath)
    if not pixels:
        raise EdgesightError(f"{data_dir or target}: no readable images to evaluate on", EXIT_DATA)
    if unreadable:
        log.warning("%d unreadable image(s) skipped: %s", len(unreadable), ", ".join(unreadable[:5]))
    y = np.asarray(labels)
    probabilities: dict[str, np.ndarray] = {}
    if sources.run:
        model = sources.run.load_model()
        probabilities["float32"] = model.predict(np.stack(pixels).astype(np.float32), batch_size=128, verbose=0)
    if sources.bundle:
        classifier = Classifier(load_bundle(sources.bundle), top_k=1)
        manifest, output = classifier.manifest, classifier.model.output
        name = output.dtype if output.dtype != "float32" else "tflite"
        probabilities[name] = np.stack(
            [scores(classifier.model.invoke(classifier.input_tensor(im)), output, manifest.scores) for im in originals]
        ).reshape(len(originals), -1)
    if sources.run:
        from train.baseline import features, load_baseline

        baseline = load_baseline(sources.run)
        if baseline is not None:
            probabilities["baseline"] = baseline.predict_proba(features(np.stack(pixels)))
    metrics = {
        "classes": list(sources.classes),
        "images": len(y),
        "unreadable": unreadable,
        "evaluated_on": str(data_dir) if data_dir else "test split",
        "models": {name: model_metrics(p, y, sources.classes, top_k) for name, p in probabilities.items()},
    }
    if "float32" in probabilities and len(probabilities) > 1:
        float_top1 = probabilities["float32"].argmax(axis=1)
        metrics["agreement_with_float32"] = {
            name: float((p.argmax(axis=1) == float_top1).mean())
            for name, p in probabilities.items()
            if name != "float32"
        }
    return Evaluation(sources.classes, pixels, relpaths, y, probabilities, metrics, unreadable)


def model_metrics(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], top_k: int) -> dict:
    """Top-1 and top-k accuracy, per-class precision/recall/F1, confusion matrix, expected calibration error."""
    everyone = list(range(len(classes)))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=everyone, zero_division=0
    )
    k = min(top_k, len(classes))
    return {
        "accuracy": float((predicted == labels).mean()),
        f"top{k}_accuracy": float(top_k_accuracy_score(labels, probabilities, k=k, labels=everyone)),
        "macro_f1": float(np.mean(f1)),
        "ece": expected_calibration_error(probabilities, labels),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion": confusion_matrix(labels, predicted, labels=everyone).tolist(),
    }


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


def misclassified(evaluation: Evaluation, model: str, limit: int = GALLERY_SIZE) -> list[tuple[int, str, str, float]]:
    """Up to ``limit`` misclassified images of ``model``, most confident mistakes first: (index, true, predicted, p)."""
    probabilities = evaluation.probabilities[model]
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != evaluation.labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:limit]
    names = evaluation.classes
    return [
        (int(i), names[evaluation.labels[i]], names[predicted[i]], float(probabilities[i, predicted[i]])) for i in wrong
    ]
