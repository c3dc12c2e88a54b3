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

from edge.bundle import MANIFEST_FILE, Manifest, load_bundle
from edge.classifier import Classifier
from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.postprocess import scores
from edge.preprocess import PreprocessSpec
from train.data import Example, discover, read_examples
from train.run import CONFIG_FILE, Run, load_run

log = logging.getLogger(__name__)

CALIBRATION_BINS = 10
# A reliability bin with fewer images than this says little: it is drawn apart, not joined into the curve.
CALIBRATION_MIN_BIN = 5
GALLERY_SIZE = 24
QUANTIZE_RECORD = "quantize.json"
EARLIER = " (earlier bundle)"  # suffix of the int8 model's name when the last quantize was refused


@dataclass(frozen=True)
class Sources:
    """What is being evaluated: a run (float model, baseline), a bundle (int8), or both."""

    run: Run | None
    bundle: Path | None
    classes: tuple[str, ...]
    spec: PreprocessSpec
    note: str = ""  # why the int8 model is an earlier bundle, or why there is none
    earlier_bundle: bool = False  # the bundle is not this run's latest quantize (it was refused)


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    images: np.ndarray  # prepared pixels (n, h, w, c), for the gallery
    relpaths: list[str]
    labels: np.ndarray
    probabilities: dict[str, np.ndarray]  # model name -> (n, classes)
    metrics: dict[str, Any]
    unreadable: list[str] = field(default_factory=list)


def resolve(target: Path, bundle: Path | None = None) -> Sources:
    """A run directory (with the bundle `quantize` recorded, or ``bundle``) or a bundle (with its run, if present)."""
    target = Path(target)
    run = None
    note, earlier = "", False
    if (target / CONFIG_FILE).is_file():
        run = load_run(target)
        if bundle is None:
            bundle, note, earlier = _recorded_bundle(run)
    elif (target / MANIFEST_FILE).is_file():
        bundle = target
        recorded = load_bundle(target).manifest.training.get("run")
        if recorded and (Path(recorded) / CONFIG_FILE).is_file():
            run = load_run(Path(recorded))
    else:
        raise EdgesightError(f"{target}: neither a run directory nor a bundle", EXIT_NO_INPUT)
    manifest = load_bundle(bundle).manifest if bundle else None
    if run and manifest and tuple(manifest.labels) != run.classes:
        if earlier:
            note = f"{note}; but {bundle} has other labels than the run, so there is no int8 column"
            bundle, manifest, earlier = None, None, False
        else:
            raise EdgesightError(f"{bundle}: its labels differ from the run {run.path}'s classes", EXIT_DATA)
    return Sources(run, bundle, *_contract(run, manifest), note, earlier)


def _contract(run: Run | None, manifest: Manifest | None) -> tuple[tuple[str, ...], PreprocessSpec]:
    if run:
        return run.classes, run.config.preprocess
    assert manifest is not None, "resolve() finds a run, a bundle or raises"
    return tuple(manifest.labels), manifest.preprocess


def _recorded_bundle(run: Run) -> tuple[Path | None, str, bool]:
    """The bundle the run's quantize.json names, or the last one that passed (with a note saying so)."""
    path = run.path / QUANTIZE_RECORD
    if not path.is_file():
        return None, f"no int8 column: {run.path} has not been quantized (edgesight-train quantize, or --bundle)", False
    record = json.loads(path.read_text())

    def present(value: str | None) -> Path | None:
        return Path(value) if value and (Path(value) / MANIFEST_FILE).is_file() else None

    if record.get("passed", True):
        found = present(record.get("bundle"))
        return found, "" if found else f"no int8 column: the bundle {record.get('bundle')} is gone", False
    refused = f"the last quantize was refused ({record.get('refused', 'see quantize.json')})"
    earlier = present(record.get("last_good_bundle"))
    if earlier is None:
        return None, f"no int8 column: {refused}, and no earlier bundle that passed is recorded", False
    version = load_bundle(earlier).manifest.version
    return earlier, f"{refused}; the int8 figures are those of the earlier bundle {earlier} (version {version})", True


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
    read = read_examples(examples_to_score(sources, data_dir), sources.spec, keep_originals=bool(sources.bundle))
    if not read.readable.any():
        raise EdgesightError(f"{data_dir or target}: no readable images to evaluate on", EXIT_DATA)
    if read.unreadable:
        log.warning("%d unreadable image(s) skipped: %s", len(read.unreadable), ", ".join(read.unreadable[:5]))
    if sources.note:
        log.warning("%s", sources.note)
    pixels, y = read.good_pixels, read.labels
    probabilities: dict[str, np.ndarray] = {}
    if sources.run:
        model = sources.run.load_model()
        probabilities["float32"] = model.predict(pixels.astype(np.float32), batch_size=128, verbose=0)
    if sources.bundle:
        classifier = Classifier(load_bundle(sources.bundle), top_k=1)
        manifest, output = classifier.manifest, classifier.model.output
        name = (output.dtype if output.dtype != "float32" else "tflite") + (EARLIER if sources.earlier_bundle else "")
        probabilities[name] = np.stack(
            [
                scores(classifier.model.invoke(classifier.input_tensor(im)), output, manifest.scores)
                for im in read.originals
            ]
        ).reshape(len(read.originals), -1)
    if sources.run:
        from train.baseline import features, load_baseline

        baseline = load_baseline(sources.run)
        if baseline is not None:
            probabilities["baseline"] = baseline.predict_proba(features(pixels))
    metrics = {
        "classes": list(sources.classes),
        "images": len(y),
        "unreadable": read.unreadable,
        "evaluated_on": str(data_dir) if data_dir else "test split",
        "notes": [sources.note] if sources.note else [],
        "models": {name: model_metrics(p, y, sources.classes, top_k) for name, p in probabilities.items()},
    }
    if "float32" in probabilities and len(probabilities) > 1:
        float_top1 = probabilities["float32"].argmax(axis=1)
        metrics["agreement_with_float32"] = {
            name: float((p.argmax(axis=1) == float_top1).mean())
            for name, p in probabilities.items()
            if name != "float32"
        }
    relpaths = [e.relpath for e in read.good]
    return Evaluation(sources.classes, pixels, relpaths, y, probabilities, metrics, read.unreadable)


def top_k_key(metrics: dict[str, Any]) -> str | None:
    """The ``topK_accuracy`` key of one model's metrics, or None when K would cover every class."""
    return next((key for key in metrics if key.startswith("top") and key.endswith("_accuracy")), None)


def model_metrics(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], top_k: int) -> dict:
    """Top-1 and top-k accuracy, per-class precision/recall/F1, confusion matrix, expected calibration error.

    Top-k is left out when k would reach the number of classes: it would be 1.0 by construction
    (scikit-learn warns, and for two classes refuses).
    """
    everyone = list(range(len(classes)))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=everyone, zero_division=0
    )
    k = min(top_k, len(classes) - 1)
    top_k_metric = (
        {f"top{k}_accuracy": float(top_k_accuracy_score(labels, probabilities, k=k, labels=everyone))} if k > 1 else {}
    )
    return {
        "accuracy": float((predicted == labels).mean()),
        **top_k_metric,
        "macro_f1": float(np.mean(f1)),
        "ece": expected_calibration_error(probabilities, labels),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion": confusion_matrix(labels, predicted, labels=everyone).tolist(),
    }


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width confidence bin: the mean confidence and the accuracy of its images."""

    confidence: float
    accuracy: float
    count: int


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> list[ReliabilityBin]:
    """The non-empty confidence bins, lowest confidence first."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [
        ReliabilityBin(float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by bin size."""
    return float(
        sum(b.count * abs(b.confidence - b.accuracy) for b in reliability(probabilities, labels, bins)) / len(labels)
    )


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
