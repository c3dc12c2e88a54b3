"""``tiny``: a small CNN (three conv stages, ~25k parameters at width 1): right for digits-sized inputs."""

import keras
from keras import layers

from train.models.layers import BN_MOMENTUM, ModelOptions, filters, head, regularizer


def build(input_shape: tuple[int, int, int], num_classes: int, options: ModelOptions) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for base in (16, 32, 64):
        for _ in range(2):
            x = layers.Conv2D(
                filters(base, options), 3, padding="same", use_bias=False, kernel_regularizer=regularizer(options)
            )(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, head(x, num_classes, options), name="tiny")
