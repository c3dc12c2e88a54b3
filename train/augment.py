"""Augmentation in the input pipeline (never in the exported graph): flips, small rotations, shifts and
scale, brightness and contrast, drawn from a seeded generator so a run can be repeated exactly.
"""

from dataclasses import dataclass

import cv2
import numpy as np

FLIPS = ("none", "horizontal", "vertical", "both")


@dataclass(frozen=True)
class Augment:
    """Ranges of the random changes; each is scaled by ``strength`` (0 turns augmentation off)."""

    strength: float = 1.0
    flip: str = "horizontal"
    rotate: float = 10.0  # degrees, either way
    shift: float = 0.1  # fraction of the side, either way
    zoom: float = 0.1  # fraction of scale, either way
    brightness: float = 0.15  # fraction of the pixel range, added
    contrast: float = 0.2  # fraction, multiplied around the image mean

    @property
    def enabled(self) -> bool:
        return self.strength > 0

    def problems(self) -> list[str]:
        found = []
        if self.flip not in FLIPS:
            found.append(f"flip must be one of {', '.join(FLIPS)} (got {self.flip!r})")
        for name in ("strength", "rotate", "shift", "zoom", "brightness", "contrast"):
            if getattr(self, name) < 0:
                found.append(f"{name} must not be negative (got {getattr(self, name)})")
        if self.zoom * self.strength >= 1 or self.contrast * self.strength >= 1:
            found.append("zoom and contrast times strength must stay below 1")
        return found


def augment_batch(pixels: np.ndarray, augment: Augment, rng: np.random.Generator) -> np.ndarray:
    """Randomly changed copies of uint8 pixels (n, h, w, c), as float32 raw pixel values in 0..255."""
    out = np.empty(pixels.shape, dtype=np.float32)
    height, width = pixels.shape[1:3]
    s = augment.strength
    for i, image in enumerate(pixels):
        if augment.flip in ("horizontal", "both") and rng.random() < 0.5:
            image = image[:, ::-1]
        if augment.flip in ("vertical", "both") and rng.random() < 0.5:
            image = image[::-1]
        angle = rng.uniform(-1, 1) * augment.rotate * s
        scale = 1 + rng.uniform(-1, 1) * augment.zoom * s
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-1, 1, 2) * augment.shift * s * np.array([width, height])
        warped = (
            cv2.warpAffine(
                np.ascontiguousarray(image),
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )
            .reshape(image.shape)
            .astype(np.float32)
        )
        contrast = 1 + rng.uniform(-1, 1) * augment.contrast * s
        brightness = rng.uniform(-1, 1) * augment.brightness * s * 255
        out[i] = (warped - warped.mean()) * contrast + warped.mean() + brightness
    return np.clip(out, 0, 255, out=out)
