"""Golden samples: test images shipped in the bundle with the int8 output they gave, re-checked on the device."""

import logging

import cv2
import numpy as np

from edge.bundle import GoldenSample
from edge.classifier import Classifier
from edge.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

GOLDEN_PER_BUNDLE = 10
GOLDEN_MIN_MARGIN_STEPS = 8  # top-1 must lead top-2 by this many output steps, so rounding cannot flip it
GOLDEN_MAX_SIDE = 4  # golden images are stored at most this many times the model's input size


def golden_image(image: np.ndarray, spec: PreprocessSpec) -> bytes:
    """The image as stored in golden/: lossless PNG, shrunk to a few times the model's size."""
    limit = GOLDEN_MAX_SIDE * max(spec.height, spec.width)
    height, width = image.shape[:2]
    if max(height, width) > limit:
        scale = limit / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", image)
    assert ok, "PNG encoding of a decoded image cannot fail"
    return encoded.tobytes()


def pick_golden(
    classifier: Classifier, images: list[np.ndarray], labels: np.ndarray
) -> tuple[list[GoldenSample], dict[str, bytes]]:
    """Pick one correctly classified test image per class (up to a limit) as golden sample.

    Among the images whose top-1 leads by a clear margin, the least confident is taken: its output is
    not saturated, so a device whose preprocessing drifts shows up as a changed output, not only a
    changed label.
    """
    names = classifier.manifest.labels
    min_margin = GOLDEN_MIN_MARGIN_STEPS * (1 if classifier.model.output.dtype != "float32" else 1 / 256)
    samples: list[GoldenSample] = []
    files: dict[str, bytes] = {}
    for label in range(min(len(names), GOLDEN_PER_BUNDLE)):
        candidates = []
        for i in np.flatnonzero(labels == label):
            data = golden_image(images[i], classifier.manifest.preprocess)
            stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert stored is not None, "a PNG just encoded decodes"
            raw = classifier.model.invoke(classifier.input_tensor(stored)).reshape(-1).astype(np.float64)
            first, second = np.sort(raw)[::-1][:2]
            if int(np.argmax(raw)) == label and first - second >= min_margin:
                candidates.append((first, data, raw))
        if candidates:
            _, data, raw = min(candidates, key=lambda c: c[0])
            name = f"{len(samples):02d}_{names[label]}.png"
            samples.append(GoldenSample(file=f"golden/{name}", label=names[label], output=tuple(raw.tolist())))
            files[name] = data
    if not samples:
        log.warning("no test image is classified with a clear margin: the bundle ships without golden samples")
    return samples, files
