"""What the architectures share: regularization, width and the classification head."""

import keras
from keras import layers

from train.config import ModelOptions

# Keras' default (0.99) suits ImageNet-sized epochs; on a few thousand images the moving variance would
# still be far from the batch statistics when early stopping looks at validation loss.
BN_MOMENTUM = 0.9


def regularizer(options: ModelOptions) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(options.weight_decay) if options.weight_decay else None


def filters(base: int, options: ModelOptions) -> int:
    return max(4, round(base * options.width))


def head(x: keras.KerasTensor, num_classes: int, options: ModelOptions) -> keras.KerasTensor:
    """Dropout and a softmax classifier named ``scores``."""
    if options.dropout:
        x = layers.Dropout(options.dropout)(x)
    return layers.Dense(num_classes, activation="softmax", kernel_regularizer=regularizer(options), name="scores")(x)
