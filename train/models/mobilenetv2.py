"""``mobilenetv2``: Keras' MobileNetV2 backbone, width multiplier ``alpha`` (``--width``), 96 to 224 px.

From scratch, from ImageNet (``--weights imagenet``: Keras's own download and cache, see
``train.models.pretrained``) or from a local weights file of the backbone without its top
(``--weights PATH``). The backbone is the nested model named ``backbone``, so that transfer learning
(``train.transfer``) can freeze it, cache its features and unfreeze its top blocks.
"""

import logging
from pathlib import Path

import keras
from keras import layers

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EXIT_USAGE, EdgesightError
from train.models.layers import BN_MOMENTUM, ModelOptions, head
from train.models.pretrained import IMAGENET, mobilenetv2_weights

log = logging.getLogger(__name__)

MIN_SIZE, MAX_SIZE = 96, 224
BACKBONE = "backbone"


def weights_file(options: ModelOptions, input_shape: tuple[int, int, int]) -> Path | None:
    """The backbone weights ``options.weights`` names (from the Keras cache for ``imagenet``), or None."""
    if not options.weights:
        return None
    if input_shape[2] != 3:
        raise EdgesightError("--weights needs --color rgb: the pretrained backbone takes 3 channels", EXIT_USAGE)
    if options.weights == IMAGENET:
        return mobilenetv2_weights(options.width, input_shape[0])
    path = Path(options.weights)
    if not path.is_file():
        raise EdgesightError(f"{path}: no such weights file (--weights)", EXIT_NO_INPUT)
    return path


def build(input_shape: tuple[int, int, int], num_classes: int, options: ModelOptions) -> keras.Model:
    height, width, _ = input_shape
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise EdgesightError(
            f"mobilenetv2 takes {MIN_SIZE} to {MAX_SIZE} px inputs (got {height}x{width}); set --size", EXIT_USAGE
        )
    weights = weights_file(options, input_shape)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # MobileNetV2 expects -1..1
    backbone = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=options.width, include_top=False, weights=None, pooling="avg", name=BACKBONE
    )
    if weights is not None:
        _load(backbone, weights, options.width)
    else:
        for layer in backbone.layers:  # Keras builds it with 0.999: too slow for a few thousand images
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = BN_MOMENTUM
    x = backbone(x)
    return keras.Model(inputs, head(x, num_classes, options), name="mobilenetv2")


def _load(backbone: keras.Model, path: Path, alpha: float) -> None:
    """Backbone weights from a file, as Keras loads its own; a file of another width is one line, not 40 KB."""
    try:
        backbone.load_weights(path)
    except (ValueError, OSError) as e:
        log.debug("loading %s failed: %s", path, e)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesightError(
            f"{path}: not the weights of a MobileNetV2 backbone without its top at --width {alpha:g}"
            f" ({first[:240]}); use the file made for that width",
            EXIT_DATA,
        ) from e
