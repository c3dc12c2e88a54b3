"""The model bundle: the one module that reads and writes it, on the workstation and on the device.

A bundle is a directory: ``model.tflite``, ``labels.txt``, ``manifest.json`` and ``golden/``. The
manifest carries a schema version and the whole preprocessing contract, so the device hard-codes
nothing. Reading validates every field and names the key that is wrong.
"""

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.preprocess import PreprocessSpec

# 2: the preprocessing contract has a version (``preprocess.version``); a reader of schema 1 would
# ignore it and resize differently, so it must refuse these manifests rather than misread them.
SCHEMA_VERSION = 2
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.tflite"
GOLDEN_DIR = "golden"
TENSOR_DTYPES = ("int8", "uint8", "float32")
# What the model's output is; "auto" (look at it: softmax unless it already is a distribution) is for
# plain .tflite models that do not say.
SCORE_KINDS = ("probabilities", "logits", "auto")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the interpreter reports it: real = (q - zero_point) * scale."""

    dtype: str
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class GoldenSample:
    """An image shipped in ``golden/`` with the raw output the converted model gave for it."""

    file: str
    label: str
    output: tuple[float, ...]
    sha256: str = ""  # of the file as written; bundles written before it was recorded have ""


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created: str
    labels: tuple[str, ...]
    preprocess: PreprocessSpec
    input: TensorSpec
    output: TensorSpec
    scores: str
    model_sha256: str
    golden: tuple[GoldenSample, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.scores not in SCORE_KINDS:  # a manifest read from a file was checked with its key path already
            raise ValueError(f"scores must be one of {', '.join(SCORE_KINDS)} (got {self.scores!r})")


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest
    model_file: str = MODEL_FILE  # a plain .tflite wrapped by edge.model_source keeps its own name

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    data = asdict(manifest)
    return {"schema_version": data.pop("schema_version"), **data}


def write_bundle(out_dir: Path, model: bytes, manifest: Manifest, golden_images: Mapping[str, bytes]) -> Bundle:
    """Write a complete bundle atomically: a half-written bundle never appears under ``out_dir``.

    Each golden sample's sha256 is recorded, so an edited golden file is told apart from a runtime that
    does not reproduce the model.
    """
    out_dir = Path(out_dir)
    written = {f"{GOLDEN_DIR}/{name}": hashlib.sha256(data).hexdigest() for name, data in golden_images.items()}
    golden = tuple(replace(s, sha256=written.get(s.file, s.sha256)) for s in manifest.golden)
    manifest = replace(manifest, golden=golden)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / MODEL_FILE).write_bytes(model)
        (staging / LABELS_FILE).write_text("".join(f"{label}\n" for label in manifest.labels))
        (staging / GOLDEN_DIR).mkdir()
        for name, data in golden_images.items():
            (staging / GOLDEN_DIR / name).write_bytes(data)
        text = json.dumps(manifest_to_dict(manifest), indent=2)
        (staging / MANIFEST_FILE).write_text(text + "\n")
        staging.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.replace(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out_dir, manifest)


class _Reader:
    """Typed access to a JSON object that names the full key path in every error."""

    def __init__(self, data: Any, where: str, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise EdgesightError(f"{where}: {prefix or 'top level'} must be an object", EXIT_DATA)
        self.data, self.where, self.prefix = data, where, prefix

    def fail(self, key: str, what: str) -> EdgesightError:
        return EdgesightError(f"{self.where}: {self.prefix}{key} {what}", EXIT_DATA)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing; rebuild the bundle with `edgesight-train quantize`")
            return default
        value = self.data[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"must be {_kind_name(kind)} (got {value!r})")
        if not isinstance(value, kind):
            raise self.fail(key, f"must be {_kind_name(kind)} (got {value!r})")
        return value

    def number(self, key: str, default: Any = ...) -> float:
        value = self.get(key, (int, float), default)
        return _finite(value, lambda: self.fail(key, f"must be a finite number (got {value!r})"))

    def numbers(self, key: str, kind: type = float, default: Any = ...) -> tuple:
        """A list of integers or of finite numbers; every item is checked."""
        values = self.get(key, list, default)
        allowed = (int,) if kind is int else (int, float)
        if not all(isinstance(v, allowed) and not isinstance(v, bool) for v in values):
            raise self.fail(key, f"must be a list of {_kind_name(kind)[3:]}s (got {values!r})")
        if kind is int:
            return tuple(values)
        return tuple(_finite(v, lambda: self.fail(key, f"must hold finite numbers (got {values!r})")) for v in values)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.get(key, str)
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)} (got {value!r})")
        return value

    def child(self, key: str) -> "_Reader":
        return _Reader(self.get(key, dict), self.where, f"{self.prefix}{key}.")


def _finite(value: int | float, error: Any) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise error() from None
    if not math.isfinite(number):
        raise error()
    return number


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _tensor(reader: _Reader) -> TensorSpec:
    return TensorSpec(
        dtype=reader.choice("dtype", TENSOR_DTYPES),
        shape=reader.numbers("shape", int),
        scale=reader.number("scale"),
        zero_point=reader.get("zero_point", int),
    )


def preprocess_from_dict(reader: _Reader) -> PreprocessSpec:
    spec = PreprocessSpec(
        height=reader.get("height", int),
        width=reader.get("width", int),
        color=reader.get("color", str),
        resize=reader.get("resize", str),
        interpolation=reader.get("interpolation", str),
        mean=reader.numbers("mean"),
        std=reader.numbers("std"),
        pad_value=reader.get("pad_value", int, 0),
        # The filters came later: manifests without them load with the filters off.
        denoise=float(reader.get("denoise", (int, float), 0.0)),
        blur=reader.get("blur", int, 0),
        clahe=float(reader.get("clahe", (int, float), 0.0)),
        clahe_tiles=reader.get("clahe_tiles", int, 8),
        sharpen=float(reader.get("sharpen", (int, float), 0.0)),
        # Manifests from before the contract had versions resize as version 1 did, bit for bit.
        version=reader.get("version", int, 1),
    )
    problems = spec.problems()
    if problems:
        raise EdgesightError(f"{reader.where}: {reader.prefix.rstrip('.')}: {problems[0]}", EXIT_DATA)
    return spec


def manifest_from_dict(data: Any, where: str) -> Manifest:
    """Validate a parsed manifest; every error names ``where`` and the key."""
    top = _Reader(data, where)
    version = top.get("schema_version", int)
    if version > SCHEMA_VERSION:
        raise top.fail(
            "schema_version", f"is {version}, newer than this edgesight reads ({SCHEMA_VERSION}); upgrade edgesight"
        )
    if version < 1:
        raise top.fail("schema_version", f"must be at least 1 (got {version})")
    labels = tuple(top.get("labels", list))
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise top.fail("labels", "must be a non-empty list of non-empty strings")
    golden = []
    for i, item in enumerate(top.get("golden", list, [])):
        sample = _Reader(item, where, f"golden[{i}].")
        golden.append(
            GoldenSample(
                file=sample.get("file", str),
                label=sample.get("label", str),
                output=sample.numbers("output"),
                sha256=sample.get("sha256", str, ""),
            )
        )
    return Manifest(
        schema_version=version,
        name=top.get("name", str),
        version=top.get("version", str),
        created=top.get("created", str),
        labels=labels,
        preprocess=preprocess_from_dict(top.child("preprocess")),
        input=_tensor(top.child("input")),
        output=_tensor(top.child("output")),
        scores=top.choice("scores", SCORE_KINDS),
        model_sha256=top.get("model_sha256", str),
        golden=tuple(golden),
        metrics=top.get("metrics", dict, {}),
        dataset=top.get("dataset", dict, {}),
        training=top.get("training", dict, {}),
        versions=top.get("versions", dict, {}),
    )


def read_manifest(path: Path) -> Manifest:
    manifest_path = Path(path) / MANIFEST_FILE
    if not manifest_path.is_file():
        raise EdgesightError(f"{path}: not a bundle (no {MANIFEST_FILE}); build one: make quantize", EXIT_NO_INPUT)
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgesightError(f"{manifest_path}: unreadable manifest ({e}); rebuild the bundle", EXIT_DATA) from e
    return manifest_from_dict(data, str(manifest_path))


def load_bundle(path: Path) -> Bundle:
    """Read and check a bundle: manifest schema, labels file, model present and matching its sha256."""
    path = Path(path)
    if not path.exists():
        raise EdgesightError(f"{path}: no such bundle directory", EXIT_NO_INPUT)
    if not path.is_dir():
        raise EdgesightError(f"{path}: a bundle is a directory with {MANIFEST_FILE} and {MODEL_FILE}", EXIT_DATA)
    manifest = read_manifest(path)
    labels_path = path / LABELS_FILE
    if labels_path.is_file():
        labels = tuple(line.strip() for line in labels_path.read_text().splitlines() if line.strip())
        if labels != manifest.labels:
            raise EdgesightError(f"{labels_path}: labels disagree with {MANIFEST_FILE}; rebuild the bundle", EXIT_DATA)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise EdgesightError(f"{model_path}: missing; the bundle is incomplete", EXIT_DATA)
    digest = sha256_file(model_path)
    if digest != manifest.model_sha256:
        raise EdgesightError(
            f"{model_path}: sha256 {digest[:12]}… does not match the manifest's {manifest.model_sha256[:12]}…;"
            " the model is corrupt or was replaced: copy the bundle again",
            EXIT_DATA,
        )
    for sample in manifest.golden:
        golden_path = path / sample.file
        if not golden_path.is_file():
            raise EdgesightError(f"{golden_path}: golden sample missing; copy the bundle again", EXIT_DATA)
        if sample.sha256 and sha256_file(golden_path) != sample.sha256:
            raise EdgesightError(
                f"{golden_path}: golden sample changed since the bundle was written (sha256 differs from"
                f" {MANIFEST_FILE}); the bundle was modified, not the runtime: copy the bundle again",
                EXIT_DATA,
            )
    return Bundle(path, manifest)
