"""Full-integer int8 conversion of a run into a bundle, measured float vs int8 on the test split.

The int8 model is evaluated through the device's own code path (``edge.classifier``) on the original
image files, so the accuracy printed here is the accuracy the Pi will have.
"""

import contextlib
import datetime
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from edge.bundle import GoldenSample, Manifest, load_bundle, sha256_file, write_bundle
from edge.classifier import Classifier
from edge.errors import EXIT_DATA, EdgesightError
from edge.images import read_image
from edge.preprocess import PreprocessSpec, prepare
from edge.runtime import Model
from train.data import load_arrays
from train.fit import MODEL_FILE, Run, load_run, versions

log = logging.getLogger(__name__)

REPRESENTATIVE_IMAGES = 300
GOLDEN_PER_BUNDLE = 10
GOLDEN_MIN_MARGIN_STEPS = 8  # top-1 must lead top-2 by this many output steps, so rounding cannot flip it
GOLDEN_MAX_SIDE = 4  # golden images are stored at most this many times the model's input size


@dataclass(frozen=True)
class QuantizeResult:
    bundle: Path
    float_accuracy: float
    int8_accuracy: float
    agreement: float  # fraction of test images where float and int8 give the same top-1
    test_images: int
    float_kb: float
    int8_kb: float


def representative_set(pixels: np.ndarray, count: int, seed: int) -> Iterator[list[np.ndarray]]:
    """Calibration inputs drawn at random from the training split, as float raw pixels."""
    order = np.random.default_rng(seed).permutation(len(pixels))[:count]
    for i in order:
        yield [pixels[i : i + 1].astype(np.float32)]


def convert(model: tf.keras.Model, calibration: np.ndarray, seed: int) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative_set(calibration, REPRESENTATIVE_IMAGES, seed)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Keras prints the exported signature; the converter warns about input statistics it derives itself.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def _golden_image(image: np.ndarray, spec: PreprocessSpec) -> bytes:
    """The image as stored in golden/: lossless PNG, shrunk to a few times the model's size."""
    limit = GOLDEN_MAX_SIDE * max(spec.height, spec.width)
    height, width = image.shape[:2]
    if max(height, width) > limit:
        scale = limit / max(height, width)
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", image)
    assert ok, "PNG encoding of a decoded image cannot fail"
    return encoded.tobytes()


def quantize(run_dir: Path, out: Path) -> QuantizeResult:
    """Convert the run's model to int8, evaluate it against the float model and write the bundle."""
    run = load_run(run_dir)
    spec = run.config.preprocess
    model = run.load_model()
    train_pixels, _, _ = load_arrays(run.examples("train"), spec)
    if len(train_pixels) == 0:
        raise EdgesightError(f"{run_dir}: the training split has no readable images to calibrate with", EXIT_DATA)
    log.info("converting to int8 with %d calibration images", min(len(train_pixels), REPRESENTATIVE_IMAGES))
    tflite_model = convert(model, train_pixels, run.config.seed)

    with tempfile.TemporaryDirectory(prefix="edgesight-quantize-") as staging:
        manifest = _manifest(run, spec, tflite_model, Path(staging))
        classifier = Classifier(write_bundle(Path(staging) / "bundle", tflite_model, manifest, {}), top_k=1)
        test = _evaluate(run, model, classifier)
        golden, golden_images = _golden(classifier, test["images"], test["labels"])
        metrics = {
            "float": {"accuracy": test["float_accuracy"]},
            "int8": {"accuracy": test["int8_accuracy"]},
            "agreement": test["agreement"],
            "test_images": len(test["labels"]),
        }
        manifest = replace(manifest, golden=tuple(golden), metrics=metrics)
        write_bundle(out, tflite_model, manifest, golden_images)

    # Read back through the device's loader: what we ship must pass the device's own checks.
    Classifier(load_bundle(out)).golden_check()
    return QuantizeResult(
        bundle=out,
        float_accuracy=test["float_accuracy"],
        int8_accuracy=test["int8_accuracy"],
        agreement=test["agreement"],
        test_images=len(test["labels"]),
        float_kb=(run.path / MODEL_FILE).stat().st_size / 1024,
        int8_kb=len(tflite_model) / 1024,
    )


def _manifest(run: Run, spec: PreprocessSpec, tflite_model: bytes, staging: Path) -> Manifest:
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
        training={"architecture": run.config.model, "epochs": run.config.epochs, "seed": run.config.seed},
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
    index = {label: i for i, label in enumerate(run.classes)}
    int8_top1 = np.asarray([index[classifier.classify(image).label] for image in images])
    return {
        "images": images,
        "labels": labels_array,
        "float_accuracy": float((float_top1 == labels_array).mean()),
        "int8_accuracy": float((int8_top1 == labels_array).mean()),
        "agreement": float((float_top1 == int8_top1).mean()),
    }


def _golden(
    classifier: Classifier, images: list[np.ndarray], labels: np.ndarray
) -> tuple[list[GoldenSample], dict[str, bytes]]:
    """Pick one correctly classified test image per class (up to a limit) as golden sample.

    Among the images whose top-1 leads by a clear margin, the least confident is taken: its output is
    not saturated, so a device whose preprocessing drifts shows up as a changed output, not only a
    changed label.
    """
    names = classifier.manifest.labels
    min_margin = GOLDEN_MIN_MARGIN_STEPS * (1 if classifier.model.output.dtype != "float32" else 1 / 256)
    samples: list[GoldenSample] = []
    files: dict[str, bytes] = {}
    for label in range(min(len(names), GOLDEN_PER_BUNDLE)):
        candidates = []
        for i in np.flatnonzero(labels == label):
            data = _golden_image(images[i], classifier.manifest.preprocess)
            stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            raw = classifier.model.invoke(classifier.input_tensor(stored)).reshape(-1).astype(np.float64)
            first, second = np.sort(raw)[::-1][:2]
            if int(np.argmax(raw)) == label and first - second >= min_margin:
                candidates.append((first, data, raw))
        if candidates:
            _, data, raw = min(candidates, key=lambda c: c[0])
            name = f"{len(samples):02d}_{names[label]}.png"
            samples.append(GoldenSample(file=f"golden/{name}", label=names[label], output=tuple(raw.tolist())))
            files[name] = data
    if not samples:
        log.warning("no test image is classified with a clear margin: the bundle ships without golden samples")
    return samples, files
