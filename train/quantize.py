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

from edge.bundle import Manifest, load_bundle, sha256_file, write_bundle
from edge.classifier import Classifier
from edge.errors import EXIT_DATA, EXIT_USAGE, EdgesightError
from edge.images import read_image
from edge.library_logs import native_stderr_filtered
from edge.preprocess import PreprocessSpec, prepare
from edge.runtime import Model
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

    @property
    def drop_points(self) -> float:
        return 100 * (self.float_accuracy - self.int8_accuracy)


def representative_files(run: Run, count: int) -> list[str]:
    """A fixed, class-stratified choice of training files: each class in proportion, at least one each.

    Files are ranked by a seeded hash of their path, so the same run always calibrates on the same set.
    """
    low, high = REPRESENTATIVE_RANGE
    if not low <= count <= high:
        raise EdgesightError(f"--representative must be within {low}..{high} (got {count})", EXIT_USAGE)
    by_class: dict[int, list[str]] = {}
    for example in run.examples("train"):
        by_class.setdefault(example.label, []).append(example.relpath)
    total = sum(len(files) for files in by_class.values())
    chosen = []
    for files in by_class.values():
        ranked = sorted(files, key=lambda r: hashlib.sha256(f"{run.config.seed}:calibrate:{r}".encode()).digest())
        chosen += ranked[: max(1, round(count * len(files) / max(1, total)))]
    return sorted(chosen)


def _calibration_pixels(run: Run, relpaths: list[str]) -> np.ndarray:
    root, spec = Path(run.config.data), run.config.preprocess
    pixels = [prepare(image, spec) for r in relpaths if (image := read_image(root / r)) is not None]
    if not pixels:
        raise EdgesightError(f"{run.path}: the training split has no readable images to calibrate with", EXIT_DATA)
    return np.stack(pixels)


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


def collapse_reason(outputs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> str:
    """Why raw model outputs (n, classes) look collapsed to a near-constant answer, or "" when they do not."""
    if len(outputs) < 2:
        return ""
    if np.ptp(outputs, axis=0).max() <= 1:
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
    """Convert the run's model, measure it against the float model, and write the bundle if it passes the gate."""
    if io_type not in IO_TYPES:
        raise EdgesightError(f"--io must be one of {', '.join(IO_TYPES)} (got {io_type!r})", EXIT_USAGE)
    run = load_run(run_dir)
    spec = run.config.preprocess
    model = run.load_model()
    chosen = representative_files(run, representative)
    (run.path / REPRESENTATIVE_FILE).write_text(json.dumps(chosen, indent=0) + "\n")
    log.info("converting to full-integer %s with %d representative images", io_type, len(chosen))
    tflite_model = convert(model, _calibration_pixels(run, chosen), io_type)

    with tempfile.TemporaryDirectory(prefix="edgesight-quantize-") as staging:
        manifest = _manifest(run, spec, tflite_model, Path(staging), len(chosen))
        classifier = Classifier(write_bundle(Path(staging) / "bundle", tflite_model, manifest, {}), top_k=1)
        test = _evaluate(run, model, classifier)
        result = QuantizeResult(
            bundle=out,
            io=io_type,
            float_accuracy=test["float_accuracy"],
            int8_accuracy=test["int8_accuracy"],
            agreement=test["agreement"],
            test_images=len(test["labels"]),
            float_kb=(run.path / MODEL_FILE).stat().st_size / 1024,
            int8_kb=len(tflite_model) / 1024,
            representative_images=len(chosen),
            collapse=collapse_reason(test["int8_outputs"], test["labels"], run.classes),
        )
        refused = gate(result, max_drop)
        if refused:
            result = replace(result, bundle=None)
        _record(run, result, max_drop, refused)
        if refused:
            raise EdgesightError(
                f"{run.path}: {refused}; no bundle written (figures in {run.path / QUANTIZE_FILE})", EXIT_DATA
            )
        golden, golden_images = pick_golden(classifier, test["images"], test["labels"])
        metrics = {
            "float": {"accuracy": result.float_accuracy},
            "int8": {"accuracy": result.int8_accuracy},
            "agreement": result.agreement,
            "test_images": result.test_images,
        }
        manifest = replace(manifest, golden=tuple(golden), metrics=metrics)
        write_bundle(out, tflite_model, manifest, golden_images)

    # Read back through the device's loader: what we ship must pass the device's own checks.
    Classifier(load_bundle(out)).golden_check()
    return result


def _record(run: Run, result: QuantizeResult, max_drop: float, refused: str) -> None:
    record = asdict(result) | {
        "bundle": str(Path(result.bundle).resolve()) if result.bundle else None,
        "drop_points": round(result.drop_points, 4),
        "max_drop": max_drop,
        "passed": not refused,
        "refused": refused,
        "representative_file": REPRESENTATIVE_FILE,
    }
    (run.path / QUANTIZE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _manifest(run: Run, spec: PreprocessSpec, tflite_model: bytes, staging: Path, representative: int) -> Manifest:
    model_path = staging / "probe.tflite"
    model_path.write_bytes(tflite_model)
    probe = Model(model_path)
    created = datetime.datetime.now(datetime.UTC)
    return Manifest(
        name=Path(run.config.data).name or "model",
        version=created.strftime("%Y%m%d-%H%M%S"),
        created=created.isoformat(timespec="seconds"),
        labels=run.classes,
        preprocess=spec,
        input=probe.input,
        output=probe.output,
        scores="probabilities",
        model_sha256=sha256_file(model_path),
        dataset={k: run.dataset[k] for k in ("fingerprint", "images", "split_counts")},
        training={
            "architecture": run.config.model,
            "epochs": run.config.epochs,
            "seed": run.config.seed,
            "run": str(run.path.resolve()),
            "quantization": {"weights": "int8 per channel", "representative_images": representative},
        },
        versions=versions() | {"runtime": f"{probe.runtime.name} {probe.runtime.version}"},
    )


def _evaluate(run: Run, model: tf.keras.Model, classifier: Classifier) -> dict:
    """Float (Keras) and int8 (device path) top-1 on the test split's original files."""
    images, labels, pixels = [], [], []
    for example in run.examples("test"):
        image = read_image(example.path)
        if image is None:
            continue
        images.append(image)
        labels.append(example.label)
        pixels.append(prepare(image, run.config.preprocess))
    if not images:
        raise EdgesightError(f"{run.path}: the test split has no readable images", EXIT_DATA)
    labels_array = np.asarray(labels)
    float_top1 = model.predict(np.stack(pixels).astype(np.float32), batch_size=128, verbose=0).argmax(axis=1)
    int8_outputs = np.stack([classifier.model.invoke(classifier.input_tensor(image)).reshape(-1) for image in images])
    int8_top1 = int8_outputs.argmax(axis=1)
    return {
        "images": images,
        "labels": labels_array,
        "int8_outputs": int8_outputs.astype(np.int64),
        "float_accuracy": float((float_top1 == labels_array).mean()),
        "int8_accuracy": float((int8_top1 == labels_array).mean()),
        "agreement": float((float_top1 == int8_top1).mean()),
    }
