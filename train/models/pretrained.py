"""ImageNet backbone weights through Keras's own download and cache (``$KERAS_HOME/models``, default ``~/.keras``).

Keras publishes MobileNetV2 weights without the classifier for six widths and five input sizes; the file
for another square size is the 224 px one (the convolutions do not depend on the input size), as
``keras.applications.MobileNetV2(weights="imagenet")`` itself picks. ``keras.utils.get_file`` downloads a
file once and reads it from the cache from then on, so a machine without internet works from a file
copied into the cache folder by hand: the error says which file and where.
"""

import contextlib
import logging
import os
from pathlib import Path

import keras

from edge.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, EdgesightError
from train.config import IMAGENET_WIDTHS

log = logging.getLogger(__name__)

# keras/src/applications/mobilenet_v2.py: BASE_WEIGHT_PATH and the sizes with files of their own.
MOBILENETV2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
MOBILENETV2_SIZES = (96, 128, 160, 192, 224)
DEFAULT_SIZE = 224
IMAGENET = "imagenet"


def keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file(..., cache_subdir="models")`` keeps downloads: ``$KERAS_HOME/models``,
    or ``/tmp/.keras/models`` when that home cannot be written (get_file's own fallback)."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    with contextlib.suppress(OSError):
        home.mkdir(parents=True, exist_ok=True)
    if not os.access(home, os.W_OK):
        home = Path("/tmp/.keras")
    return home / "models"


def mobilenetv2_file(alpha: float, size: int) -> str:
    """The file name Keras downloads for a MobileNetV2 backbone without its top."""
    if alpha not in IMAGENET_WIDTHS:
        raise EdgesightError(
            f"--weights imagenet: Keras publishes MobileNetV2 weights for --width"
            f" {', '.join(f'{a:g}' for a in IMAGENET_WIDTHS)} (got {alpha:g})",
            EXIT_CONFIG,
        )
    rows = size if size in MOBILENETV2_SIZES else DEFAULT_SIZE
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def mobilenetv2_weights(alpha: float, size: int) -> Path:
    """The ImageNet backbone file from the Keras cache, downloaded into it first if absent."""
    name = mobilenetv2_file(alpha, size)
    cache = keras_cache_dir()
    if not (cache / name).is_file():
        log.info("downloading %s into %s (once; later runs read the cache)", name, cache)
    try:
        path = keras.utils.get_file(name, MOBILENETV2_URL + name, cache_subdir="models", cache_dir=str(cache.parent))
    except Exception as e:  # get_file raises a bare Exception for every failed fetch; it removes the partial file
        reason = " ".join(str(e).split()).rpartition(" -- ")[2]  # after "URL fetch failure on <url>: <errno> -- "
        raise EdgesightError(
            f"cannot download {name} from {MOBILENETV2_URL} ({reason[:120]}); without internet, copy that file"
            f" into {cache}/",
            EXIT_UNAVAILABLE,
        ) from e
    return Path(path)
