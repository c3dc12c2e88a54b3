"""A bundle made runnable: preprocessing contract + interpreter + postprocessing, and the golden check."""

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle, load_bundle
from edge.config import ModelConfig
from edge.errors import EXIT_CONFIG, EXIT_DATA, EdgesightError
from edge.fastprep import handles, make_preparer
from edge.images import read_image
from edge.model_source import plain_model_bundle
from edge.postprocess import Classification, scores, top_k
from edge.preprocess import INTEGER_DTYPES
from edge.runtime import Model

# Golden outputs may differ by a rounding step between CPU kernels (x86 vs Arm, XNNPACK vs reference).
GOLDEN_TOLERANCE_STEPS = 2


class Classifier:
    """Classifies BGR frames exactly as the bundle's manifest prescribes."""

    def __init__(
        self,
        bundle: Bundle,
        num_threads: int | None = None,
        top_k: int = 3,
        delegate: str = "auto",
        model: Model | None = None,
    ) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.top_k = top_k
        self.model = model or Model(bundle.model_path, num_threads, delegate)
        self._check_tensors()
        self._prepare = make_preparer(self.manifest.preprocess, self.model.input)

    @property
    def name(self) -> str:
        return f"{self.manifest.name} {self.manifest.version}"

    def describe(self) -> dict[str, Any]:
        """What `edgesight doctor` and the live state say about the model."""
        return {
            "name": self.manifest.name,
            "version": self.manifest.version,
            "path": str(self.bundle.model_path),
            "sha256": self.manifest.model_sha256,
            "labels": len(self.manifest.labels),
            "input": f"{self.model.input.dtype}{list(self.model.input.shape)}",
            "runtime": f"{self.model.runtime.name} {self.model.runtime.version}",
            "edgetpu": self.model.edgetpu,
            "fast_preprocessing": handles(self.manifest.preprocess, self.model.input),
        }

    def _check_tensors(self) -> None:
        spec = self.manifest.preprocess
        expected = (1, spec.height, spec.width, spec.channels)
        for name, actual, declared in (
            ("input", self.model.input, self.manifest.input),
            ("output", self.model.output, self.manifest.output),
        ):
            if (actual.dtype, actual.shape) != (declared.dtype, declared.shape):
                raise EdgesightError(
                    f"{self.bundle.path}: the model's {name} is {actual.dtype}{list(actual.shape)} but the manifest"
                    f" says {declared.dtype}{list(declared.shape)}; rebuild the bundle",
                    EXIT_DATA,
                )
        if self.model.input.shape != expected:
            raise EdgesightError(
                f"{self.bundle.path}: model input {list(self.model.input.shape)} does not match the preprocessing"
                f" contract {list(expected)}",
                EXIT_DATA,
            )
        if self.model.output.shape[-1] != len(self.manifest.labels):
            raise EdgesightError(
                f"{self.bundle.path}: the model has {self.model.output.shape[-1]} outputs but"
                f" {len(self.manifest.labels)} labels",
                EXIT_DATA,
            )

    def input_tensor(self, image: np.ndarray) -> np.ndarray:
        """The model's input for one BGR frame, with the batch dimension."""
        return self._prepare(image)

    def classify(self, image: np.ndarray) -> Classification:
        started = time.perf_counter()
        raw = self.model.invoke(self.input_tensor(image))
        probabilities = scores(raw, self.model.output, self.manifest.scores)
        ranked = top_k(probabilities, self.manifest.labels, self.top_k)
        latency_ms = (time.perf_counter() - started) * 1000
        return Classification(ranked[0][0], ranked[0][1], ranked, latency_ms, probabilities)

    def golden_check(self) -> int:
        """Re-run the bundle's golden samples; raise if any disagrees. Returns how many were checked."""
        output = self.model.output
        tolerance = GOLDEN_TOLERANCE_STEPS * (output.scale if output.dtype in INTEGER_DTYPES else 1e-3)
        for sample in self.manifest.golden:
            path = Path(self.bundle.path) / sample.file
            image = read_image(path)
            if image is None:
                raise EdgesightError(f"{path}: golden sample unreadable; copy the bundle again", EXIT_DATA)
            raw = self.model.invoke(self.input_tensor(image)).reshape(-1).astype(np.float64)
            expected = np.asarray(sample.output, dtype=np.float64)
            steps = 1 if output.dtype not in INTEGER_DTYPES else output.scale
            difference = float(np.abs(raw - expected).max()) * steps if raw.shape == expected.shape else np.inf
            label = self.manifest.labels[int(np.argmax(raw))]
            if label != sample.label or difference > tolerance:
                # load_bundle has matched the file against its recorded sha256; older bundles record none.
                cause = (
                    "this runtime does not reproduce the bundle"
                    if sample.sha256
                    else "this runtime does not reproduce the bundle, or the file was edited (the bundle records"
                    " no golden sha256 to tell: rebuild it with `edgesight-train quantize`)"
                )
                raise EdgesightError(
                    f"{path}: golden check failed (got {label!r}, expected {sample.label!r}, output differs by"
                    f" {difference:.4g}); {cause}: refusing it",
                    EXIT_DATA,
                )
        return len(self.manifest.golden)


def load_classifier(config: ModelConfig) -> Classifier:
    """A bundle directory (sha256 checked on load) or a plain ``.tflite`` with its labels."""
    path = Path(config.path)
    if path.suffix == ".tflite":
        labels = Path(config.labels) if config.labels else None
        bundle, model = plain_model_bundle(path, labels, config.mean, config.std, config.threads, config.delegate)
        return Classifier(bundle, top_k=config.top_k, model=model)
    if config.labels or config.mean or config.std:
        raise EdgesightError(
            f"{path}: [model] labels, mean and std are for plain .tflite files; a bundle carries its own",
            EXIT_CONFIG,
        )
    return Classifier(load_bundle(path), config.threads, config.top_k, config.delegate)
