"""Finding and decoding image files, the same way on the workstation and on the device."""

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def image_files(root: Path) -> list[Path]:
    """Image files under a folder, walked recursively and sorted, so runs are reproducible."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and is_image_file(p))


def read_image(path: Path) -> np.ndarray | None:
    """Decode an image file as 8-bit BGR (EXIF orientation applied), or None when it cannot be decoded."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)
