"""Checking an uploaded image before it is decoded: its type by content, its size from its header.

A 5 MB PNG can declare a billion pixels; the header is read first so that such a file is refused
instead of exhausting a Pi's memory.
"""

import struct
from http import HTTPStatus

import cv2
import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACCEPTED_TYPES = {"image/jpeg": "jpeg", "image/jpg": "jpeg", "image/png": "png", "application/octet-stream": None}
# JPEG start-of-frame markers carry the image size; C4, C8 and CC are other segments.
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class UploadError(ValueError):
    """An upload the server refuses, with the HTTP status that says why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def image_kind(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


def image_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame segment; None when not found."""
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return struct.unpack(">II", data[16:24])
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
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in SOF_MARKERS:
            if offset + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + length
    return None


def check_upload(body: bytes, content_type: str, max_pixels: int) -> np.ndarray:
    """Decode an uploaded JPEG or PNG as BGR, or raise ``UploadError`` naming what is wrong."""
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared and declared not in ACCEPTED_TYPES:
        raise UploadError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Type {declared} is not image/jpeg or image/png")
    kind = image_kind(body)
    if kind is None:
        raise UploadError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the body is not a JPEG or PNG image")
    expected = ACCEPTED_TYPES.get(declared)
    if expected is not None and expected != kind:
        raise UploadError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"the body is a {kind.upper()} but is sent as {declared}")
    size = image_size(body, kind)
    if size is None or 0 in size:
        raise UploadError(HTTPStatus.UNPROCESSABLE_ENTITY, f"the {kind.upper()} header holds no usable image size")
    if size[0] * size[1] > max_pixels:
        raise UploadError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the image is {size[0]}x{size[1]} pixels; the limit is {max_pixels} pixels",
        )
    image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UploadError(HTTPStatus.UNPROCESSABLE_ENTITY, f"the {kind.upper()} image cannot be decoded")
    return image
