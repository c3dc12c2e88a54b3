"""The TFLite interpreter behind a small interface: LiteRT first, then tflite-runtime, then TensorFlow.

Quantization parameters are read from the interpreter, never assumed. A model compiled for the Coral
Edge TPU (it carries the ``edgetpu-custom-op``) runs through the Edge TPU delegate.
"""

import ctypes
import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge import library_logs
from edge.bundle import TensorSpec
from edge.errors import EXIT_DATA, EXIT_UNAVAILABLE, EdgesightError

log = logging.getLogger(__name__)

# Module that provides ``Interpreter``, in order of preference. TensorFlow is the last resort for a
# workstation; the device never needs it. (``tf.lite`` is an attribute of the lazily built API module;
# importing the package ``tensorflow.lite`` gives a module without ``Interpreter``.)
RUNTIMES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)


EDGETPU_OP = b"edgetpu-custom-op"
EDGETPU_LIBRARY = "libedgetpu.so.1"
DELEGATES = ("auto", "cpu", "edgetpu")


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    version: str


def available_runtimes() -> list[tuple[str, str]]:
    """Each runtime in order of preference: its version, or why it cannot be used.

    Only the first installed one is imported (the one the daemon would use): importing TensorFlow
    on a workstation just to list it would take many seconds.
    """
    found, chosen = [], False
    for package, module_name in RUNTIMES:
        if importlib.util.find_spec(module_name.split(".")[0]) is None:
            found.append((package, "not installed"))
            continue
        if not chosen:
            try:
                importlib.import_module(module_name)
            except ImportError as e:
                found.append((package, f"installed but not importable ({e})"))
                continue
            chosen = True
        found.append((package, _package_version(package)))
    return found


def _runtime_module() -> tuple[Any, RuntimeInfo]:
    failures = []
    for package, module_name in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            failures.append(f"{package}: {e}")
            continue
        return module, RuntimeInfo(package, _package_version(package))
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


def compiled_for_edgetpu(path: Path) -> bool:
    """True when the Edge TPU compiler produced this model (it then needs the Edge TPU delegate)."""
    try:
        return EDGETPU_OP in Path(path).read_bytes()
    except OSError:
        return False


def _edgetpu_delegate(module: Any, path: Path) -> Any:
    load_delegate = getattr(module, "load_delegate", None) or module.experimental.load_delegate
    try:
        # Loading the library first keeps a failed Delegate() from printing its own traceback at exit.
        ctypes.CDLL(EDGETPU_LIBRARY)
        return load_delegate(EDGETPU_LIBRARY)
    except (ValueError, OSError, RuntimeError) as e:
        raise EdgesightError(
            f"{path}: needs the Coral Edge TPU, but {EDGETPU_LIBRARY} does not load ({e}); install the Edge TPU"
            " runtime (libedgetpu1-std from Coral's apt repository) and plug the accelerator in, or use the"
            ' model\'s CPU version with [model] delegate = "cpu"',
            EXIT_UNAVAILABLE,
        ) from e


class Model:
    """A loaded single-input, single-output TFLite model; ``invoke`` returns the raw output row."""

    def __init__(self, path: Path, num_threads: int | None = None, delegate: str = "auto") -> None:
        module, self.runtime = _runtime_module()
        self.path = Path(path)
        self.edgetpu = delegate == "edgetpu" or (delegate == "auto" and compiled_for_edgetpu(self.path))
        delegates = [_edgetpu_delegate(module, self.path)] if self.edgetpu else []
        try:
            with library_logs.native_stderr_filtered():  # the first one announces its XNNPACK delegate
                self._interpreter = module.Interpreter(
                    model_path=str(self.path), num_threads=num_threads, experimental_delegates=delegates
                )
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
        log.info(
            "loaded %s with %s %s (%s threads%s)",
            self.path,
            self.runtime.name,
            self.runtime.version,
            num_threads,
            ", Edge TPU" if self.edgetpu else "",
        )

    def invoke(self, tensor: np.ndarray) -> np.ndarray:
        """Run one input of the model's shape and dtype (batch of one); return its output without the batch."""
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)[0]
