"""Checking an uploaded image before it is decoded: its type by content, its size from its header.

A 5 MB PNG can declare a billion pixels; the header is read first so that such a file is refused
instead of exhausting a Pi's memory.
"""

from http import HTTPStatus

import numpy as np

from edge.images import ImageError, decode_image, image_kind, image_size

ACCEPTED_TYPES = {"image/jpeg": "jpeg", "image/jpg": "jpeg", "image/png": "png", "application/octet-stream": None}


class UploadError(ValueError):
    """An upload the server refuses, with the HTTP status that says why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_upload(body: bytes, content_type: str, max_pixels: int) -> np.ndarray:
    """Decode an uploaded JPEG or PNG as BGR, or raise ``UploadError`` naming what is wrong."""
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared and declared not in ACCEPTED_TYPES:
        raise UploadError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Type {declared} is not image/jpeg or image/png")
    kind = image_kind(body)
    if kind is None or kind not in ("jpeg", "png"):
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
    try:
        return decode_image(body)
    except ImageError as e:
        raise UploadError(HTTPStatus.UNPROCESSABLE_ENTITY, f"the {kind.upper()} image cannot be decoded") from e
