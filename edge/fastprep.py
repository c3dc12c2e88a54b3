"""The preprocessing contract (``edge.preprocess``) implemented for speed on the device.

Per frame: the contract's own resize (``resize_to``, the function training uses) from the captured
size (a crop is a view, a letterbox resizes straight into its canvas), one colour conversion at the
model's size, and one ``cv2.LUT`` pass that maps uint8 pixels to the model's integer input
(normalization and quantization folded into the table), written straight into a preallocated input
tensor. The result is bit-identical to ``prepare`` + ``quantize``; tests hold it to that. Specs or
frames it does not handle (float inputs, fields added to ``PreprocessSpec`` later, 16-bit or
4-channel frames) go through the reference path.
"""

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np

from edge.bundle import TensorSpec
from edge.preprocess import (
    INTEGER_DTYPES,
    PreprocessSpec,
    crop_box,
    letterbox_box,
    normalize,
    prepare,
    quantize,
    quantize_table,
    resize_to,
)

# The fields whose semantics this module implements; any other field set away from its default means
# a contract this module does not know yet, so the reference path runs.
HANDLED_FIELDS = frozenset(
    {"height", "width", "color", "resize", "interpolation", "mean", "std", "pad_value", "version"}
)

Preparer = Callable[[np.ndarray], np.ndarray]


def handles(spec: PreprocessSpec, tensor: TensorSpec) -> bool:
    """True when the fast path implements this spec for this input tensor."""
    if tensor.dtype not in INTEGER_DTYPES:
        return False
    # The same spec with every other field at its default: equal when nothing unknown was set.
    handled = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name in HANDLED_FIELDS}
    return spec == type(spec)(**handled)


def reference_preparer(spec: PreprocessSpec, tensor: TensorSpec) -> Preparer:
    """The training-time path: ``prepare``, then the table (integer inputs) or ``normalize`` (float)."""
    if tensor.dtype in INTEGER_DTYPES:
        table = quantize_table(spec, tensor.scale, tensor.zero_point, tensor.dtype)
        return lambda image: quantize(prepare(image, spec), table)[np.newaxis]
    return lambda image: normalize(prepare(image, spec), spec)[np.newaxis]


def make_preparer(spec: PreprocessSpec, tensor: TensorSpec) -> Preparer:
    """A function from a BGR frame to the model's input batch of one, the fastest exact way available.

    The returned array is reused for the next frame: the interpreter copies it in ``set_tensor``.
    """
    reference = reference_preparer(spec, tensor)
    if not handles(spec, tensor):
        return reference
    table = quantize_table(spec, tensor.scale, tensor.zero_point, tensor.dtype)
    lut: np.ndarray = table.T.reshape(256, 1, spec.channels).copy()  # cv2.LUT wants (256, 1, channels)
    batch = np.empty((1, spec.height, spec.width, spec.channels), INTEGER_DTYPES[tensor.dtype])
    target: np.ndarray = batch[0] if spec.channels == 3 else batch[0, :, :, 0]
    if spec.channels == 1:
        lut = lut.reshape(256, 1)
    resize = _RESIZERS[spec.resize](spec)
    to_model_colour = cv2.COLOR_BGR2RGB if spec.color == "rgb" else cv2.COLOR_BGR2GRAY

    def fast(image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            return reference(image)
        cv2.LUT(cv2.cvtColor(resize(image), to_model_colour), lut, dst=target)
        return batch

    return fast


def _squash(spec: PreprocessSpec) -> Callable[[np.ndarray], np.ndarray]:
    def resize(image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (spec.height, spec.width):
            return image
        return resize_to(image, spec.width, spec.height, spec)

    return resize


def _center_crop(spec: PreprocessSpec) -> Callable[[np.ndarray], np.ndarray]:
    def resize(image: np.ndarray) -> np.ndarray:
        x, y, crop_w, crop_h = crop_box(image.shape[1], image.shape[0], spec)
        view = image[y : y + crop_h, x : x + crop_w]  # a view: no copy of the full frame
        if view.shape[:2] == (spec.height, spec.width):
            return view
        return resize_to(view, spec.width, spec.height, spec)

    return resize


def _letterbox(spec: PreprocessSpec) -> Callable[[np.ndarray], np.ndarray]:
    canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
    last: dict[str, tuple[int, int, int, int]] = {}

    def resize(image: np.ndarray) -> np.ndarray:
        box = letterbox_box(image.shape[1], image.shape[0], spec)
        if last.get("box") != box:
            canvas[:] = spec.pad_value  # a new frame size: the padding moves
            last["box"] = box
        x, y, inner_w, inner_h = box
        resize_to(image, inner_w, inner_h, spec, dst=canvas[y : y + inner_h, x : x + inner_w])
        return canvas

    return resize


_RESIZERS = {"squash": _squash, "center_crop": _center_crop, "letterbox": _letterbox}
