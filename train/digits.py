"""scikit-learn's handwritten digits (shipped with the package, no download) as a class-folder dataset."""

from pathlib import Path

import cv2
import numpy as np
from sklearn.datasets import load_digits

DIGITS_SIZE = 32


def write_digits(out: Path, size: int = DIGITS_SIZE) -> int:
    """Write the 1,797 8×8 digits as ``out/<digit>/<index>.png``, upscaled to ``size``; return the count."""
    digits = load_digits()
    out = Path(out)
    for index, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
        folder = out / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index:04d}.png"), pixels)
    return len(digits.images)
