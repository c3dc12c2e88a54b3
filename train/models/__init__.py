"""Architectures found by name: ``build_model("resnet8", shape, classes, options)``; one module each.

Every model takes raw pixels (0..255, float) and scales them inside the graph, so the integer input of
the converted model is the pixel value shifted by the zero point: the device's lookup table is exact.
"""

from collections.abc import Callable

import keras

from edge.errors import EXIT_USAGE, EdgesightError
from train.config import ModelOptions
from train.models import mobilenetv2, resnet8, tiny

Builder = Callable[[tuple[int, int, int], int, ModelOptions], keras.Model]
MODELS: dict[str, Builder] = {
    "tiny": tiny.build,
    "resnet8": resnet8.build,
    "mobilenetv2": mobilenetv2.build,
}

__all__ = ["MODELS", "ModelOptions", "build_model"]


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, options: ModelOptions | None = None
) -> keras.Model:
    if name not in MODELS:
        raise EdgesightError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}", EXIT_USAGE)
    return MODELS[name](input_shape, num_classes, options or ModelOptions())
