"""A bundle made runnable: preprocessing contract + interpreter + postprocessing, and the golden check."""

import time
from pathlib import Path

import numpy as np

from edge.bundle import Bundle
from edge.errors import EXIT_DATA, EdgesightError
from edge.images import read_image
from edge.postprocess import Classification, scores, top_k
from edge.preprocess import INTEGER_DTYPES, normalize, prepare, quantize, quantize_table
from edge.runtime import Model

# Golden outputs may differ by a rounding step between CPU kernels (x86 vs Arm, XNNPACK vs reference).
GOLDEN_TOLERANCE_STEPS = 2


class Classifier:
    """Classifies BGR frames exactly as the bundle's manifest prescribes."""

    def __init__(self, bundle: Bundle, num_threads: int | None = None, top_k: int = 3) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.top_k = top_k
        self.model = Model(bundle.model_path, num_threads)
        self._check_tensors()
        spec = self.model.input
        self._table = (
            quantize_table(self.manifest.preprocess, spec.scale, spec.zero_point, spec.dtype)
            if spec.dtype in INTEGER_DTYPES
            else None
        )

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
        pixels = prepare(image, self.manifest.preprocess)
        if self._table is not None:
            return quantize(pixels, self._table)[np.newaxis]
        return normalize(pixels, self.manifest.preprocess)[np.newaxis]

    def classify(self, image: np.ndarray) -> Classification:
        started = time.perf_counter()
        raw = self.model.invoke(self.input_tensor(image))
        probabilities = scores(raw, self.model.output, self.manifest.scores)
        ranked = top_k(probabilities, self.manifest.labels, self.top_k)
        latency_ms = (time.perf_counter() - started) * 1000
        return Classification(ranked[0][0], ranked[0][1], ranked, latency_ms)

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
                raise EdgesightError(
                    f"{path}: golden check failed (got {label!r}, expected {sample.label!r}, output differs by"
                    f" {difference:.4g}); this runtime does not reproduce the bundle: refusing it",
                    EXIT_DATA,
                )
        return len(self.manifest.golden)
