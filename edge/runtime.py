"""The TFLite interpreter behind a small interface: LiteRT first, then tflite-runtime, then TensorFlow.

Quantization parameters are read from the interpreter, never assumed.
"""

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import TensorSpec
from edge.errors import EXIT_DATA, EXIT_UNAVAILABLE, EdgesightError

log = logging.getLogger(__name__)

# Module that provides ``Interpreter``, in order of preference. TensorFlow is the last resort for a
# workstation; the device never needs it.
RUNTIMES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    version: str


def _interpreter_class() -> tuple[type, RuntimeInfo]:
    failures = []
    for package, module_name in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            failures.append(f"{package}: {e}")
            continue
        version = _package_version(package)
        return module.Interpreter, RuntimeInfo(package, version)
    raise EdgesightError(
        "no TFLite runtime imports (" + "; ".join(failures) + "); install one: pip install ai-edge-litert",
        EXIT_UNAVAILABLE,
    )


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _tensor_spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        dtype=np.dtype(detail["dtype"]).name,
        shape=tuple(int(v) for v in detail["shape"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


class Model:
    """A loaded single-input, single-output TFLite model; ``invoke`` returns the raw output row."""

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        interpreter_class, self.runtime = _interpreter_class()
        self.path = Path(path)
        try:
            self._interpreter = interpreter_class(model_path=str(self.path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise EdgesightError(f"{self.path}: not a loadable TFLite model ({e})", EXIT_DATA) from e
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgesightError(
                f"{self.path}: a classifier has one input and one output (this model has"
                f" {len(inputs)} and {len(outputs)})",
                EXIT_DATA,
            )
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]
        self.input = _tensor_spec(inputs[0])
        self.output = _tensor_spec(outputs[0])
        log.info("loaded %s with %s %s (%s threads)", self.path, self.runtime.name, self.runtime.version, num_threads)

    def invoke(self, tensor: np.ndarray) -> np.ndarray:
        """Run one input of the model's shape and dtype (batch of one); return its output without the batch."""
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)[0]
