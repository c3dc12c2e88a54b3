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
    """Randomly changed copies of uint8 pixels (n, h, w, c), as float32 raw pixel values in 0..255.

    Every random number of the batch is drawn first, a few calls in all; the flips fold into each image's
    affine matrix, so one OpenCV warp per image (outside the GIL) is the only per-image step, and contrast
    and brightness are whole-batch array operations: the input side stays small beside a training step.
    """
    n, height, width, channels = pixels.shape
    s = augment.strength
    horizontal = np.asarray(rng.random(n) < 0.5) & (augment.flip in ("horizontal", "both"))
    vertical = np.asarray(rng.random(n) < 0.5) & (augment.flip in ("vertical", "both"))
    draws = np.asarray(rng.uniform(-1, 1, (6, n))) * s
    angle = np.radians(draws[0] * augment.rotate)
    scale = 1 + draws[1] * augment.zoom
    shift = draws[2:4].T * augment.shift * np.array([width, height])
    contrast = (1 + draws[4] * augment.contrast).astype(np.float32)
    brightness = (draws[5] * augment.brightness * 255).astype(np.float32)
    matrices = _affine(angle, scale, shift, horizontal, vertical, width, height)
    warped = np.empty_like(pixels)
    for i in range(n):
        source, target = pixels[i], warped[i]
        if channels == 1:  # OpenCV drops a single channel's axis
            source, target = source[..., 0], target[..., 0]
        cv2.warpAffine(
            source, matrices[i], (width, height), dst=target, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
    mean = warped.reshape(n, -1).mean(axis=1, dtype=np.float32)
    out = warped.astype(np.float32)
    out *= contrast[:, None, None, None]
    out += ((1 - contrast) * mean + brightness)[:, None, None, None]
    return np.clip(out, 0, 255, out=out)


def _affine(
    angle: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    horizontal: np.ndarray,
    vertical: np.ndarray,
    width: int,
    height: int,
) -> np.ndarray:
    """(n, 2, 3) matrices: flip, then rotate and scale about the centre (``cv2.getRotationMatrix2D``), then shift."""
    cx, cy = width / 2, height / 2
    alpha, beta = scale * np.cos(angle), scale * np.sin(angle)
    m = np.empty((len(angle), 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = alpha, beta, (1 - alpha) * cx - beta * cy + shift[:, 0]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -beta, alpha, beta * cx + (1 - alpha) * cy + shift[:, 1]
    # A flip first: x -> (width - 1) - x composed on the right, so its matrix column changes sign.
    m[horizontal, :, 2] += m[horizontal, :, 0] * (width - 1)
    m[horizontal, :, 0] *= -1
    m[vertical, :, 2] += m[vertical, :, 1] * (height - 1)
    m[vertical, :, 1] *= -1
    return m
