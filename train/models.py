"""Architectures found by name: ``build_model("tiny", ...)``; each a builder function.

Every model takes raw pixels (0..255, float) and scales them inside the graph, so the int8 input of
the converted model is the pixel value shifted by the zero point: the device's lookup table is exact.
"""

from collections.abc import Callable

import keras
from keras import layers

from edge.errors import EXIT_USAGE, EdgesightError

# Keras' default (0.99) suits ImageNet-sized epochs; on a few thousand images the moving variance would
# still be far from the batch statistics when early stopping looks at validation loss.
BN_MOMENTUM = 0.9

Builder = Callable[[tuple[int, int, int], int], keras.Model]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return add


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    if name not in MODELS:
        raise EdgesightError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}", EXIT_USAGE)
    return MODELS[name](input_shape, num_classes)


def _conv_block(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU()(x)


@register("tiny")
def tiny(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A small CNN (three conv stages, ~25k parameters): right for digits-sized inputs."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for filters in (16, 32, 64):
        x = _conv_block(x, filters)
        x = _conv_block(x, filters)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="tiny")
