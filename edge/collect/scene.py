"""Is this frame new? The mean absolute difference between small grey thumbnails.

A 32×32 grey thumbnail averages away sensor noise and JPEG blocks; the mean absolute difference of two,
as a fraction of full scale, is about 0 for the same scene and grows with how much of the picture
changed and by how much (a garage door that opens over a third of the frame: about 0.1). Unlike a
perceptual hash it also sees a change of lighting, which is variation a training set needs.
"""

from collections import deque

import cv2
import numpy as np

THUMBNAIL_SIDE = 32
COARSE_SIDE = 256  # larger frames are subsampled to about this before averaging: ~0.5 ms for 1080p


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A 32×32 grey float32 thumbnail in 0..1."""
    step = max(1, min(image.shape[:2]) // COARSE_SIDE)
    image = image[::step, ::step]
    height, width = image.shape[:2]
    if height >= THUMBNAIL_SIDE and width >= THUMBNAIL_SIDE:
        # Whole multiples of the thumbnail's side take OpenCV's fast INTER_AREA path.
        image = image[: height - height % THUMBNAIL_SIDE, : width - width % THUMBNAIL_SIDE]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


class RecentFrames:
    """The thumbnails of the last ``keep`` frames kept, newest last."""

    def __init__(self, keep: int = 64) -> None:
        self._thumbnails: deque[np.ndarray] = deque(maxlen=keep)

    def __len__(self) -> int:
        return len(self._thumbnails)

    def nearest(self, thumb: np.ndarray) -> float:
        """The smallest difference to a kept frame; infinite when none is kept."""
        return min((difference(thumb, kept) for kept in self._thumbnails), default=float("inf"))

    def since_last(self, thumb: np.ndarray) -> float:
        """The difference to the newest kept frame; infinite when none is kept."""
        return difference(thumb, self._thumbnails[-1]) if self._thumbnails else float("inf")

    def add(self, thumb: np.ndarray) -> None:
        self._thumbnails.append(thumb)
