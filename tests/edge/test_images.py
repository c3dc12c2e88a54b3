"""Image headers read without decoding, and the pixel limit that keeps a decompression bomb undecoded."""

import struct

import cv2
import numpy as np
import pytest

from edge.images import ImageError, ImageTooLargeError, decode_image, image_kind, image_size, load_image
from tests.helpers import blank_png, png_claiming


def encoded(suffix: str, image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, image, list(params))
    assert ok
    return data.tobytes()


def test_header_sizes_of_every_readable_format_are_read_without_decoding():
    image = np.zeros((37, 53, 3), np.uint8)
    files = {
        "jpeg": encoded(".jpg", image),
        "png": encoded(".png", image),
        "bmp": encoded(".bmp", image),
        "webp": encoded(".webp", image),  # lossy: VP8
        "tiff": encoded(".tiff", image),
    }
    for kind, data in files.items():
        assert (image_kind(data), image_size(data, kind)) == (kind, (53, 37)), kind
    lossless = encoded(".webp", image, cv2.IMWRITE_WEBP_QUALITY, 101)
    assert lossless[12:16] == b"VP8L" and image_size(lossless, "webp") == (53, 37)
    # Written by hand, as OpenCV writes none of them: the extended WebP canvas, big-endian TIFF,
    # BigTIFF and the 16-bit BMP core header.
    vp8x = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
    vp8x += (20000 - 1).to_bytes(3, "little") + (15000 - 1).to_bytes(3, "little")
    assert image_kind(vp8x) == "webp" and image_size(vp8x, "webp") == (20000, 15000)
    entries = struct.pack(">HHII", 256, 4, 1, 70000) + struct.pack(">HHIHH", 257, 3, 1, 9000, 0)
    motorola = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries
    assert image_kind(motorola) == "tiff" and image_size(motorola, "tiff") == (70000, 9000)
    big_entries = struct.pack("<HHQQ", 256, 16, 1, 123456) + struct.pack("<HHQQ", 257, 4, 1, 654)
    bigtiff = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", 2) + big_entries
    assert image_kind(bigtiff) == "bigtiff" and image_size(bigtiff, "bigtiff") == (123456, 654)
    core = b"BM" + bytes(12) + struct.pack("<IHHHH", 12, 640, 480, 1, 24)
    assert image_size(core, "bmp") == (640, 480)
    assert image_size(b"\x89PNG\r\n\x1a\n" + bytes(4), "png") is None  # truncated: no size, no exception


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path):
    bomb = blank_png(6000, 5000)  # 29 KB of PNG, 30 million pixels
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="6000x5000 pixels, over the limit of 24000000 pixels"):
        decode_image(bomb, max_pixels=24_000_000)
    assert decode_image(bomb, max_pixels=30_000_000).shape == (5000, 6000, 3)  # within a raised limit
    with pytest.raises(ImageTooLargeError):
        decode_image(png_claiming(100_000, 100_000), max_pixels=24_000_000)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="not a JPEG, PNG, BMP, WebP or TIFF file"):
        load_image(tmp_path / "text.jpg", max_pixels=24_000_000)
    with pytest.raises(ImageError, match="unreadable"):
        load_image(tmp_path / "absent.png")
