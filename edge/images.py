"""Finding and decoding image files, the same way on the workstation and on the device.

Decoding allocates what the header declares: a 400 KB PNG can declare 20000x20000 pixels and take
2.4 GB. Where a limit is given, the size is read from the header first and such a file is refused
before it is decoded (a Pi under systemd's ``MemoryMax`` would otherwise be killed on it, again and again).
"""

import struct
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# 24 Mpx, a 6000x4000 camera photo: 72 MB once decoded, which a Pi Zero 2 W can still afford.
MAX_PIXELS = 24_000_000
# JPEG start-of-frame markers carry the image size; C4, C8 and CC are other segments.
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
KINDS = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"II+\x00": "bigtiff",
    b"MM\x00+": "bigtiff",
}


class ImageError(ValueError):
    """An image that is not decoded: ``str(e)`` says why, for the one log line that reports the skip."""


class ImageTooLargeError(ImageError):
    """An image whose header declares more pixels than the caller allows."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def image_files(root: Path) -> list[Path]:
    """Image files under a folder, walked recursively and sorted, so runs are reproducible."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and is_image_file(p))


def image_kind(data: bytes) -> str | None:
    """The format by its leading bytes: jpeg, png, bmp, webp, tiff or bigtiff; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in KINDS.items() if data.startswith(magic)), None)


def image_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) as the header declares it, without decoding; None when the header holds none."""
    try:
        return _SIZE_READERS[kind](data)
    except (struct.error, IndexError, ValueError):
        return None


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode as 8-bit BGR (EXIF orientation applied); with ``max_pixels``, check the header's size first.

    Raises ``ImageError`` for an undecodable image and for one over the limit.
    """
    if not data:
        raise ImageError("not a decodable image (an empty file)")
    if max_pixels is not None:
        kind = image_kind(data)
        if kind is None:
            raise ImageError("not a decodable image (not a JPEG, PNG, BMP, WebP or TIFF file)")
        size = image_size(data, kind)
        if size is None or 0 in size:
            raise ImageError(f"not a decodable image (its {kind.upper()} header holds no usable size)")
        if size[0] * size[1] > max_pixels:
            raise ImageTooLargeError(f"{size[0]}x{size[1]} pixels, over the limit of {max_pixels} pixels")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("not a decodable image")
    return image


def load_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """``decode_image`` of a file's contents; an unreadable file is an ``ImageError`` too."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"unreadable ({e.strerror})") from e
    return decode_image(data, max_pixels)


def read_image(path: Path, max_pixels: int | None = None) -> np.ndarray | None:
    """``load_image``, or None for a file that is skipped (for callers that count skips, not reasons)."""
    try:
        return load_image(path, max_pixels)
    except ImageError:
        return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in SOF_MARKERS:
            height, width = struct.unpack_from(">HH", data, offset + 5)
            return width, height
        offset += 2 + length
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack_from(">II", data, 16)


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height means top-down rows


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: after the frame tag's start code
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit sizes minus one
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sizes minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _tiff_size(data: bytes, big: bool = False) -> tuple[int, int] | None:
    """Width and height from the first IFD (the image OpenCV decodes), classic TIFF or BigTIFF."""
    order = "<" if data[:2] == b"II" else ">"
    if big:
        (offset,) = struct.unpack_from(order + "Q", data, 8)
        count_format, entry_size, value_at = "Q", 20, 12
    else:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        count_format, entry_size, value_at = "H", 12, 8
    (entries,) = struct.unpack_from(order + count_format, data, offset)
    first = offset + struct.calcsize(count_format)
    found: dict[int, int] = {}
    for i in range(min(entries, 4096)):
        at = first + i * entry_size
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or LONG8
            value_format = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if value_format is None:
                return None
            (found[tag],) = struct.unpack_from(order + value_format, data, at + value_at)
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


_SIZE_READERS = {
    "jpeg": _jpeg_size,
    "png": _png_size,
    "bmp": _bmp_size,
    "webp": _webp_size,
    "tiff": _tiff_size,
    "bigtiff": lambda data: _tiff_size(data, big=True),
}
