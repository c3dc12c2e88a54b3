"""From the model's raw output to labelled scores: dequantize, softmax where needed, top-k, threshold."""

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge.bundle import TensorSpec

UNKNOWN = "unknown"  # the label of a frame whose top score is below [results] threshold


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    topk: tuple[tuple[str, float], ...]
    latency_ms: float
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def thresholded(self, threshold: float) -> "Classification":
        """This classification with its label ``unknown`` when the top score is below ``threshold``."""
        return self if self.score >= threshold else replace(self, label=UNKNOWN)

    def to_json(self) -> dict[str, Any]:
        """The JSON of `edgesight classify` and ``POST /api/classify``."""
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "topk": [[label, round(score, 4)] for label, score in self.topk],
            "latency_ms": round(self.latency_ms, 3),
        }


def dequantize(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values of an output tensor; float outputs pass through."""
    if spec.dtype == "float32" or spec.scale == 0:
        return raw.astype(np.float32)
    return (raw.astype(np.float32) - spec.zero_point) * spec.scale


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def looks_like_probabilities(values: np.ndarray) -> bool:
    return bool(values.min() >= -1e-3 and abs(float(values.sum()) - 1.0) < 0.05)


def scores(raw: np.ndarray, spec: TensorSpec, kind: str) -> np.ndarray:
    """Per-class probabilities from a raw output row.

    ``kind`` is 'probabilities', 'logits', or 'auto' for models that do not say: the softmax is then
    applied when the output is not already a distribution.
    """
    values = dequantize(raw.reshape(-1), spec)
    if kind == "logits" or (kind == "auto" and not looks_like_probabilities(values)):
        return softmax(values)
    return values


def top_k(probabilities: np.ndarray, labels: tuple[str, ...], k: int) -> tuple[tuple[str, float], ...]:
    k = min(k, len(labels))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return tuple((labels[i], float(probabilities[i])) for i in order)


def label_or_unknown(label: str, score: float, threshold: float) -> str:
    return label if score >= threshold else UNKNOWN
