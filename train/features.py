"""A frozen backbone's features of every image, computed once and cached beside the prepared pixels.

The file lives in the pixel cache's entry (keyed by dataset fingerprint and preprocessing contract) as
``features-<key>.npy``, float32 (n, d) in the order of ``Dataset.examples``, where the key names the
backbone: architecture, width, input shape and the sha256 of its weights file. Another backbone, another
contract or a changed image each make a new file; the same run again trains its head at once.
"""

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from edge.bundle import sha256_file
from train.cache import PreparedImages

log = logging.getLogger(__name__)

FEATURES_FORMAT = 1
BATCH = 64


def backbone_key(architecture: str, width: float, input_shape: tuple[int, ...], weights: Path) -> str:
    """What makes two backbones compute the same features."""
    payload = {
        "format": FEATURES_FORMAT,
        "architecture": architecture,
        "width": width,
        "input_shape": list(input_shape),
        "weights_sha256": sha256_file(weights),
        "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def cached_features(
    images: PreparedImages,
    extractor: keras.Model,
    key: str,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, Path, bool]:
    """``extractor``'s output for every readable image (zeros for the others), its file, and whether it was cached."""
    path = images.path / f"features-{key}.npy"
    if path.is_file():
        log.info("backbone features from the cache %s", path)
        return np.load(path), path, True
    readable = np.flatnonzero(images.readable)
    features = np.zeros((len(images.pixels), extractor.output_shape[-1]), np.float32)
    for start in range(0, len(readable), BATCH):
        rows = readable[start : start + BATCH]
        features[rows] = extractor.predict_on_batch(np.asarray(images.pixels[rows], np.float32))
        if progress is not None:
            progress(min(start + BATCH, len(readable)))
    # Written beside, then renamed: a run killed half-way never leaves a truncated file behind.
    handle, staging = tempfile.mkstemp(prefix=".features-", suffix=".npy", dir=images.path)
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, features)
        Path(staging).replace(path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return features, path, False
