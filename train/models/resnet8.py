"""``resnet8``: the MLPerf Tiny image-classification reference (CIFAR-10, 32×32, ~78k parameters).

As in mlcommons/tiny ``benchmark/training/image_classification/keras_model.py``: a 16-filter stem and
three residual stacks of 16, 32 and 64 filters (stride 2 with a 1×1 projection from the second on),
average pooling and a softmax classifier. The reference trains with L2 1e-4 (``--weight-decay``).
"""

import keras
from keras import layers

from train.models.layers import BN_MOMENTUM, ModelOptions, filters, head, regularizer


def _conv(x: keras.KerasTensor, n: int, options: ModelOptions, kernel: int = 3, stride: int = 1) -> keras.KerasTensor:
    return layers.Conv2D(
        n,
        kernel,
        strides=stride,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer(options),
    )(x)


def build(input_shape: tuple[int, int, int], num_classes: int, options: ModelOptions) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.ReLU()(layers.BatchNormalization(momentum=BN_MOMENTUM)(_conv(x, filters(16, options), options)))
    for stack, base in enumerate((16, 32, 64)):
        n, stride = filters(base, options), 1 if stack == 0 else 2
        y = layers.ReLU()(layers.BatchNormalization(momentum=BN_MOMENTUM)(_conv(x, n, options, stride=stride)))
        y = layers.BatchNormalization(momentum=BN_MOMENTUM)(_conv(y, n, options))
        if stride != 1:
            x = _conv(x, n, options, kernel=1, stride=stride)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)  # the reference's 8×8 average pool at 32×32, for any size
    return keras.Model(inputs, head(x, num_classes, options), name="resnet8")
