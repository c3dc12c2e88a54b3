"""Full-integer int8 conversion of a run into a bundle, and the gate it must pass.

Weights are quantized per channel, activations calibrated on a fixed, class-stratified representative
set from the training split (recorded in the run as ``representative.json``). The int8 model is then
evaluated through the device's own code path (``edge.classifier``) on the original test files, beside
the float model; the bundle is written only when the int8 model did not lose more than ``max_drop``
accuracy points and did not collapse to a near-constant output.
"""

import contextlib
import datetime
import hashlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge.bundle import MODEL_FILE as BUNDLE_MODEL_FILE
from edge.bundle import Bundle, Manifest, load_bundle, write_bundle
from edge.classifier import Classifier
from edge.errors import EXIT_DATA, EXIT_USAGE, EdgesightError
from edge.library_logs import native_stderr_filtered
from edge.runtime import Model
from train.data import ReadExamples, read_examples
from train.golden import pick_golden
from train.run import MODEL_FILE, Run, load_run, versions

log = logging.getLogger(__name__)

REPRESENTATIVE_IMAGES = 300
REPRESENTATIVE_RANGE = (100, 500)
REPRESENTATIVE_FILE = "representative.json"
QUANTIZE_FILE = "quantize.json"
IO_TYPES = {"int8": tf.int8, "uint8": tf.uint8}
MAX_DROP_POINTS = 1.0
# Collapse: one class predicted for at least this share of the test images, while the truth is spread wider.
COLLAPSE_SHARE = 0.9
COLLAPSE_MARGIN = 0.3


@dataclass(frozen=True)
class QuantizeResult:
    bundle: Path | None  # None when the gate refused it
    io: str
    float_accuracy: float
    int8_accuracy: float
    agreement: float  # fraction of test images where float and int8 give the same top-1
    test_images: int
    float_kb: float
    int8_kb: float
    representative_images: int
    collapse: str  # why the int8 model looks collapsed, or ""
    float_collapse: str = ""  # why the float model itself looks collapsed, or ""

    @property
    def drop_points(self) -> float:
        return 100 * (self.float_accuracy - self.int8_accuracy)


class GateRefusedError(EdgesightError):
    """The gate refused the int8 model; ``result`` holds the figures (for the float/int8 table)."""

    def __init__(self, message: str, result: QuantizeResult) -> None:
        super().__init__(message, EXIT_DATA)
        self.result = result


def representative_files(run: Run, count: int) -> list[str]:
    """A fixed, class-stratified choice of training files: each class in proportion, at least one each.

    Files are ranked by a seeded hash of their path, so the same run always calibrates on the same set.
    Files the run found unreadable are never chosen.
    """
    low, high = REPRESENTATIVE_RANGE
    if not low <= count <= high:
        raise EdgesightError(f"--representative must be within {low}..{high} (got {count})", EXIT_USAGE)
    unreadable = set(run.dataset.get("unreadable", []))
    by_class: dict[int, list[str]] = {}
    for example in run.examples("train"):
        if example.relpath not in unreadable:
            by_class.setdefault(example.label, []).append(example.relpath)
    total = sum(len(files) for files in by_class.values())
    chosen = []
    for files in by_class.values():
        ranked = sorted(files, key=lambda r: hashlib.sha256(f"{run.config.seed}:calibrate:{r}".encode()).digest())
        chosen += ranked[: max(1, round(count * len(files) / max(1, total)))]
    return sorted(chosen)


def calibration_set(run: Run, count: int) -> tuple[list[str], np.ndarray]:
    """The representative files actually read and their prepared pixels; a file unreadable now is left out."""
    wanted = set(representative_files(run, count))
    read = read_examples([e for e in run.examples("train") if e.relpath in wanted], run.config.preprocess)
    if read.unreadable:
        log.warning("%d representative file(s) unreadable, left out: %s", len(read.unreadable), read.unreadable[:5])
    if not read.readable.any():
        raise EdgesightError(f"{run.path}: the training split has no readable images to calibrate with", EXIT_DATA)
    return [e.relpath for e in read.good], read.good_pixels


def convert(model: tf.keras.Model, calibration: np.ndarray, io_type: str = "int8") -> bytes:
    """Full-integer conversion, weights per channel (the converter's default for convolutions)."""

    def samples() -> Iterator[list[np.ndarray]]:
        for pixels in calibration:
            yield [pixels[np.newaxis].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = IO_TYPES[io_type]
    converter.inference_output_type = IO_TYPES[io_type]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), native_stderr_filtered():
        # Keras prints the exported signature; the converter warns about input statistics it derives itself.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def collapse_reason(outputs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], resolution: float = 1.0) -> str:
    """Why model outputs (n, classes) look collapsed to a near-constant answer, or "" when they do not.

    ``resolution``: the smallest change that counts (one step of an int8 output, 1/256 of a probability).
    """
    if len(outputs) < 2:
        return ""
    if np.ptp(outputs, axis=0).max() <= resolution:
        return f"its output is the same for all {len(outputs)} test images"
    top1 = outputs.argmax(axis=1)
    predicted = np.bincount(top1, minlength=len(classes))
    share = predicted.max() / len(top1)
    true_share = np.bincount(labels, minlength=len(classes)).max() / len(labels)
    if share >= COLLAPSE_SHARE and share >= true_share + COLLAPSE_MARGIN:
        return f"it answers {classes[int(predicted.argmax())]!r} for {share:.0%} of the test images"
    return ""


def gate(result: QuantizeResult, max_drop: float) -> str:
    """Why the int8 model must not ship, or "" when it passes."""
    if result.float_collapse:
        return (
            f"the float model itself collapsed ({result.float_collapse}), so int8 is not the cause:"
            " retrain it (check the data report and history.csv)"
        )
    if result.collapse:
        return f"the int8 model collapsed: {result.collapse}"
    if result.drop_points > max_drop:
        return (
            f"int8 test accuracy {result.int8_accuracy:.4f} is {result.drop_points:.2f} points below float"
            f" {result.float_accuracy:.4f}, more than --max-drop {max_drop:g}"
        )
    return ""


def quantize(
    run_dir: Path,
    out: Path,
    *,
    max_drop: float = MAX_DROP_POINTS,
    io_type: str = "int8",
    representative: int = REPRESENTATIVE_IMAGES,
) -> QuantizeResult:
    """Convert the run's model, measure it against the float model, and write the bundle if it passes the gate.

    Raises ``GateRefusedError`` (exit 65, figures attached) when the gate refuses the int8 model.
    """
    if io_type not in IO_TYPES:
        raise EdgesightError(f"--io must be one of {', '.join(IO_TYPES)} (got {io_type!r})", EXIT_USAGE)
    if not 0 <= max_drop <= 100:  # also refuses NaN
        raise EdgesightError(f"--max-drop must be within 0..100 accuracy points (got {max_drop:g})", EXIT_USAGE)
    run = load_run(run_dir)
    model = run.load_model()
    chosen, calibration = calibration_set(run, representative)
    (run.path / REPRESENTATIVE_FILE).write_text(json.dumps(chosen, indent=0) + "\n")
    log.info("converting to full-integer %s with %d representative images", io_type, len(chosen))
    tflite_model = convert(model, calibration, io_type)
    test = read_examples(run.examples("test"), run.config.preprocess, keep_originals=True)
    if not test.readable.any():
        raise EdgesightError(f"{run.path}: the test split has no readable images", EXIT_DATA)

    with tempfile.TemporaryDirectory(prefix="edgesight-quantize-") as staging:
        # One interpreter serves the manifest, the measurement, the golden samples and the read-back check.
        (Path(staging) / BUNDLE_MODEL_FILE).write_bytes(tflite_model)
        interpreter = Model(Path(staging) / BUNDLE_MODEL_FILE)
        manifest = _manifest(run, interpreter, hashlib.sha256(tflite_model).hexdigest(), len(chosen))
        classifier = Classifier(Bundle(Path(staging), manifest), top_k=1, model=interpreter)
        measured = _measure(model, classifier, test)
        labels = test.labels
        result = QuantizeResult(
            bundle=out,
            io=io_type,
            float_accuracy=float((measured["float"].argmax(axis=1) == labels).mean()),
            int8_accuracy=float((measured["int8"].argmax(axis=1) == labels).mean()),
            agreement=float((measured["float"].argmax(axis=1) == measured["int8"].argmax(axis=1)).mean()),
            test_images=len(labels),
            float_kb=(run.path / MODEL_FILE).stat().st_size / 1024,
            int8_kb=len(tflite_model) / 1024,
            representative_images=len(chosen),
            collapse=collapse_reason(measured["int8"], labels, run.classes),
            float_collapse=collapse_reason(measured["float"], labels, run.classes, resolution=1 / 256),
        )
        refused = gate(result, max_drop)
        if refused:
            result = replace(result, bundle=None)
        _record(run, result, max_drop, refused)
        if refused:
            raise GateRefusedError(
                f"{run.path}: {refused}; no bundle written (figures in {run.path / QUANTIZE_FILE})", result
            )
        golden, golden_images = pick_golden(classifier, list(test.originals), labels)
        metrics = {
            "float": {"accuracy": result.float_accuracy},
            "int8": {"accuracy": result.int8_accuracy},
            "agreement": result.agreement,
            "test_images": result.test_images,
        }
        manifest = replace(manifest, golden=tuple(golden), metrics=metrics)
        write_bundle(out, tflite_model, manifest, golden_images)
        # Read back through the device's loader: what we ship must pass the device's own checks.
        Classifier(load_bundle(out), top_k=1, model=interpreter).golden_check()
    return result


def _record(run: Run, result: QuantizeResult, max_drop: float, refused: str) -> None:
    """quantize.json: this attempt's figures, and the last bundle that passed (evaluate falls back on it)."""
    path = run.path / QUANTIZE_FILE
    last_good = str(Path(result.bundle).resolve()) if result.bundle else None
    if last_good is None and path.is_file():
        try:
            previous = json.loads(path.read_text())
            last_good = previous.get("bundle") or previous.get("last_good_bundle")
        except (OSError, ValueError):
            last_good = None
    record = asdict(result) | {
        "bundle": str(Path(result.bundle).resolve()) if result.bundle else None,
        "last_good_bundle": last_good,
        "drop_points": round(result.drop_points, 4),
        "max_drop": max_drop,
        "passed": not refused,
        "refused": refused,
        "representative_file": REPRESENTATIVE_FILE,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def _manifest(run: Run, interpreter: Model, model_sha256: str, representative: int) -> Manifest:
    created = datetime.datetime.now(datetime.UTC)
    return Manifest(
        name=Path(run.config.data).name or "model",
        version=created.strftime("%Y%m%d-%H%M%S"),
        created=created.isoformat(timespec="seconds"),
        labels=run.classes,
        preprocess=run.config.preprocess,
        input=interpreter.input,
        output=interpreter.output,
        scores="probabilities",
        model_sha256=model_sha256,
        dataset={k: run.dataset[k] for k in ("fingerprint", "images", "split_counts")},
        training={
            "architecture": run.config.model,
            "epochs": run.config.epochs,
            "seed": run.config.seed,
            "run": str(run.path.resolve()),
            "quantization": {"weights": "int8 per channel", "representative_images": representative},
        },
        versions=versions() | {"runtime": f"{interpreter.runtime.name} {interpreter.runtime.version}"},
    )


def _measure(model: tf.keras.Model, classifier: Classifier, test: ReadExamples) -> dict[str, np.ndarray]:
    """Float (Keras, probabilities) and int8 (device path, raw outputs) of the test split's original files."""
    probabilities = model.predict(test.good_pixels.astype(np.float32), batch_size=128, verbose=0)
    raw = [classifier.model.invoke(classifier.input_tensor(image)).reshape(-1) for image in test.originals]
    return {"float": np.asarray(probabilities, np.float64), "int8": np.stack(raw).astype(np.int64)}
