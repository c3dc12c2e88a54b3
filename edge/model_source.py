"""Models that are not our bundles: a plain ``.tflite`` with a labels file or TFLite metadata.

The preprocessing contract a bundle's manifest carries is derived here instead: the size and colour
from the input tensor; labels from the config's file, else the model's metadata, else ``labels.txt``
beside it (a leading background class the model has no output for is dropped); normalization from
the config, else the metadata, else the input's own quantization: an integer input takes raw pixels
(uint8 as they are, int8 shifted by 128), as quantized image models expect.
"""

import logging
from pathlib import Path

from edge.bundle import LABELS_FILE, Bundle, Manifest, TensorSpec, sha256_file
from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.preprocess import PreprocessSpec
from edge.runtime import Model
from edge.tflite_metadata import ModelMetadata, read_metadata

log = logging.getLogger(__name__)

# A float model without metadata or configured mean/std gets inputs in [-1, 1], the convention of the
# TensorFlow Lite image classification examples.
FLOAT_MEAN, FLOAT_STD = 127.5, 127.5


def read_labels(path: Path) -> tuple[str, ...]:
    """One label per line; an optional leading index ("0 cat" or "0: cat") is removed."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise EdgesightError(f"{path}: no such labels file", EXIT_NO_INPUT) from e
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesightError(f"{path}: unreadable labels file ({e})", EXIT_DATA) from e
    labels = [line.strip() for line in lines if line.strip()]
    split = [label.replace(":", " ", 1).split(maxsplit=1) for label in labels]
    if labels and all(len(parts) == 2 and parts[0] == str(i) for i, parts in enumerate(split)):
        labels = [parts[1] for parts in split]
    return tuple(labels)


def fit_labels(labels: tuple[str, ...], outputs: int, where: str) -> tuple[str, ...]:
    """Labels matched to the model's outputs: a leading background class without an output is dropped."""
    if len(labels) == outputs:
        return labels
    if len(labels) == outputs + 1:
        log.info("%s: %d labels for %d outputs: dropping the leading %r", where, len(labels), outputs, labels[0])
        return labels[1:]
    raise EdgesightError(f"{where}: {len(labels)} labels for a model with {outputs} outputs", EXIT_DATA)


def default_normalization(tensor: TensorSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std (pixel units) under which an integer input receives the raw pixel."""
    if tensor.dtype == "float32" or not tensor.scale:
        return (FLOAT_MEAN,), (FLOAT_STD,)
    # q = round((p - mean) / std / scale) + zero_point must equal p (uint8) or p - 128 (int8).
    shift = 128 if tensor.dtype == "int8" else 0
    return (float(tensor.zero_point + shift),), (1.0 / tensor.scale,)


def plain_model_bundle(
    model_path: Path,
    labels_path: Path | None = None,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
    num_threads: int | None = None,
    delegate: str = "auto",
) -> tuple[Bundle, Model]:
    """Wrap a plain ``.tflite`` as a ``Bundle`` (without golden samples), with its loaded model."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise EdgesightError(f"{model_path}: no such model file", EXIT_NO_INPUT)
    model = Model(model_path, num_threads, delegate)
    shape = model.input.shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        raise EdgesightError(f"{model_path}: input {list(shape)} is not an image batch [1, h, w, 1 or 3]", EXIT_DATA)
    metadata = read_metadata(model_path) or ModelMetadata()
    outputs = model.output.shape[-1]
    if labels_path is None and metadata.labels:
        labels = fit_labels(metadata.labels, outputs, f"{model_path} (metadata)")
    else:
        if labels_path is not None and not labels_path.is_file():
            raise EdgesightError(f"{labels_path}: no such labels file", EXIT_NO_INPUT)
        labels_path = labels_path or model_path.with_name(LABELS_FILE)
        if not labels_path.is_file():
            raise EdgesightError(
                f"{model_path}: no labels; put a {LABELS_FILE} beside the model or name one ([model] labels, --labels)",
                EXIT_NO_INPUT,
            )
        labels = fit_labels(read_labels(labels_path), outputs, str(labels_path))
    default_mean, default_std = default_normalization(model.input)
    if metadata.mean and metadata.std:
        default_mean, default_std = metadata.mean, metadata.std
    spec = PreprocessSpec(
        height=shape[1],
        width=shape[2],
        color="rgb" if shape[3] == 3 else "grayscale",
        resize="squash",
        interpolation="area",
        mean=mean or default_mean,
        std=std or default_std,
    )
    problems = spec.problems()
    if problems:
        raise EdgesightError(f"{model_path}: {problems[0]}", EXIT_DATA)
    manifest = Manifest(
        name=model_path.stem,
        version="plain",
        created="",
        labels=labels,
        preprocess=spec,
        input=model.input,
        output=model.output,
        # A plain model does not say whether it ends in a softmax: its output is looked at.
        scores="auto",
        model_sha256=sha256_file(model_path),
    )
    return Bundle(model_path.parent, manifest, model_file=model_path.name), model
