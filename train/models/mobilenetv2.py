"""``mobilenetv2``: Keras' MobileNetV2 backbone, width multiplier ``alpha`` (``--width``), 96 to 224 px.

From scratch, or from a local weights file of the backbone without its top (``--weights PATH``, e.g.
Keras' ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5`` copied by hand): nothing
downloads at run time.
"""

from pathlib import Path

import keras
from keras import layers

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EXIT_USAGE, EdgesightError
from train.models.layers import BN_MOMENTUM, ModelOptions, head

MIN_SIZE, MAX_SIZE = 96, 224


def build(input_shape: tuple[int, int, int], num_classes: int, options: ModelOptions) -> keras.Model:
    height, width, channels = input_shape
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise EdgesightError(
            f"mobilenetv2 takes {MIN_SIZE} to {MAX_SIZE} px inputs (got {height}x{width}); set --size", EXIT_USAGE
        )
    weights = options.weights or None
    if weights:
        if not Path(weights).is_file():
            raise EdgesightError(f"{weights}: no such weights file (--weights)", EXIT_NO_INPUT)
        if channels != 3:
            raise EdgesightError("--weights needs --color rgb: the pretrained backbone takes 3 channels", EXIT_USAGE)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # MobileNetV2 expects -1..1
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=input_shape, alpha=options.width, include_top=False, weights=weights, pooling="avg"
        )
    except ValueError as e:
        raise EdgesightError(
            f"{weights}: not MobileNetV2 backbone weights for this input size and width ({e})", EXIT_DATA
        ) from e
    for layer in backbone.layers:  # Keras builds it with 0.999: too slow for a few thousand images
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    x = backbone(x)
    return keras.Model(inputs, head(x, num_classes, options), name="mobilenetv2")
