"""The preprocessing contract: one implementation for training and for the device.

A frame arrives as OpenCV gives it (BGR, uint8, any size). ``prepare`` fixes its geometry and colour
(the model's size, RGB or greyscale, uint8) and applies the optional OpenCV filters (denoising or
Gaussian blur, CLAHE contrast equalization, sharpening) at the model's size, where they are cheapest;
``normalize`` maps it to float for float models and for
Keras; ``quantize`` maps uint8 pixels straight to the model's integer input through a 256-entry table
that folds normalization and quantization together, so the device never goes through float.
"""

from dataclasses import dataclass

import cv2
import numpy as np

COLORS = ("rgb", "grayscale")
RESIZE_MODES = ("squash", "center_crop", "letterbox")
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}
INTEGER_DTYPES = {"int8": np.int8, "uint8": np.uint8}
# Versions of the contract. 1: every resize is one ``cv2.resize`` call. 2: an "area" downscale first halves
# the frame by exact 2x2 averages (OpenCV's vectorised integer path), then takes the rest with INTER_AREA;
# one call at a non-integer ratio is OpenCV's scalar code, ten times slower on a 1080p frame.
CONTRACT_VERSIONS = (1, 2)
CONTRACT_VERSION = 2


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a captured frame into the model's input, recorded in the bundle manifest.

    ``mean`` and ``std`` are in pixel units (0..255), one value for all channels or one per channel:
    the model sees ``(pixel - mean) / std``. Our own models keep their scaling inside the graph and use
    mean 0, std 1, so their int8 input is the raw pixel shifted by the zero point.
    """

    height: int
    width: int
    color: str = "rgb"
    resize: str = "squash"
    interpolation: str = "area"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    pad_value: int = 0
    # Optional filters, applied in this order after resizing; the defaults mean "off".
    denoise: float = 0.0  # non-local-means strength h (OpenCV fastNlMeansDenoising); try 3..10
    blur: int = 0  # Gaussian blur kernel side, odd (3, 5, ...)
    clahe: float = 0.0  # CLAHE clip limit, on luminance; try 2.0
    clahe_tiles: int = 8  # CLAHE grid: tiles per side
    sharpen: float = 0.0  # unsharp-mask amount; try 0.5..1.5
    # The contract's version (CONTRACT_VERSIONS); manifests written before it existed are version 1.
    version: int = CONTRACT_VERSION

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    def problems(self) -> list[str]:
        """Return what is wrong with this spec, each naming the field and the allowed values."""
        found = []
        if self.height < 1 or self.width < 1:
            found.append(f"height and width must be positive (got {self.height}x{self.width})")
        if self.color not in COLORS:
            found.append(f"color must be one of {', '.join(COLORS)} (got {self.color!r})")
        if self.resize not in RESIZE_MODES:
            found.append(f"resize must be one of {', '.join(RESIZE_MODES)} (got {self.resize!r})")
        if self.interpolation not in INTERPOLATIONS:
            found.append(f"interpolation must be one of {', '.join(INTERPOLATIONS)} (got {self.interpolation!r})")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                found.append(f"{name} needs 1 or {self.channels} values (got {len(values)})")
        if any(s == 0 for s in self.std):
            found.append("std must not be 0")
        if not 0 <= self.pad_value <= 255:
            found.append(f"pad_value must be within 0..255 (got {self.pad_value})")
        if self.blur != 0 and (self.blur < 3 or self.blur % 2 == 0):
            found.append(f"blur must be 0 (off) or an odd kernel side of 3 or more (got {self.blur})")
        for name in ("denoise", "clahe", "sharpen"):
            if getattr(self, name) < 0:
                found.append(f"{name} must be 0 (off) or positive (got {getattr(self, name)})")
        if self.clahe_tiles < 1:
            found.append(f"clahe_tiles must be at least 1 (got {self.clahe_tiles})")
        if self.version not in CONTRACT_VERSIONS:
            allowed = ", ".join(map(str, CONTRACT_VERSIONS))
            found.append(f"version must be one of {allowed} (got {self.version}); a newer edgesight reads it")
        return found


def _to_bgr(image: np.ndarray) -> np.ndarray:
    """Accept what decoders hand out: greyscale, BGR or BGRA, 8 or 16 bit."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 or uint16 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def halve(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """2x2 averages, rounded half up, while both sides are even and their halves still cover the target."""
    h, w = image.shape[:2]
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= height and w // 2 >= width:
        h, w = h // 2, w // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


def halving_ahead(spec: PreprocessSpec) -> tuple[int, int] | None:
    """The (width, height) that ``halve`` may run to where a frame is decoded, ahead of ``prepare``, with
    the very same result: a squash resize by area (contract 2), whose first step it is. None otherwise
    (a crop or letterbox box is measured on the whole frame)."""
    if spec.interpolation == "area" and spec.version >= 2 and spec.resize == "squash":
        return spec.width, spec.height
    return None


def resize_to(
    image: np.ndarray, width: int, height: int, spec: PreprocessSpec, dst: np.ndarray | None = None
) -> np.ndarray:
    """The contract's resize of ``image`` to ``width`` x ``height`` (into ``dst`` when given)."""
    if spec.interpolation == "area" and spec.version >= 2:
        image = halve(image, width, height)
    return cv2.resize(image, (width, height), dst=dst, interpolation=INTERPOLATIONS[spec.interpolation])


def crop_box(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """The centred region (x, y, width, height) of a frame that ``center_crop`` keeps."""
    scale = min(width / spec.width, height / spec.height)
    crop_w, crop_h = round(spec.width * scale), round(spec.height * scale)
    return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h


def letterbox_box(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """Where (x, y, width, height) a frame lands inside the ``letterbox`` canvas."""
    scale = min(spec.width / width, spec.height / height)
    inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
    return (spec.width - inner_w) // 2, (spec.height - inner_h) // 2, inner_w, inner_h


def _resize(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    height, width = image.shape[:2]
    if spec.resize == "center_crop":
        x, y, crop_w, crop_h = crop_box(width, height, spec)
        image = image[y : y + crop_h, x : x + crop_w]
    elif spec.resize == "letterbox":
        x, y, inner_w, inner_h = letterbox_box(width, height, spec)
        canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
        canvas[y : y + inner_h, x : x + inner_w] = resize_to(image, inner_w, inner_h, spec)
        return canvas
    if image.shape[:2] == (spec.height, spec.width):
        return image
    return resize_to(image, spec.width, spec.height, spec)


def _filter(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The optional filters on RGB or 2-D greyscale uint8 pixels at the model's size."""
    grey = pixels.ndim == 2
    if spec.denoise:
        if grey:
            pixels = cv2.fastNlMeansDenoising(pixels, None, h=spec.denoise)
        else:
            pixels = cv2.fastNlMeansDenoisingColored(pixels, None, spec.denoise, spec.denoise)
    if spec.blur:
        pixels = cv2.GaussianBlur(pixels, (spec.blur, spec.blur), 0)
    if spec.clahe:
        clahe = cv2.createCLAHE(clipLimit=spec.clahe, tileGridSize=(spec.clahe_tiles, spec.clahe_tiles))
        if grey:
            pixels = clahe.apply(pixels)
        else:  # equalize luminance only, so colours keep their hue
            lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
            lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
            pixels = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    if spec.sharpen:
        blurred = cv2.GaussianBlur(pixels, (0, 0), 1.0)
        pixels = cv2.addWeighted(pixels, 1.0 + spec.sharpen, blurred, -spec.sharpen, 0)
    return pixels


def prepare(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Return the frame at the model's size and colour, filtered: uint8, shape (height, width, channels)."""
    resized = _resize(_to_bgr(image), spec)
    if spec.color == "grayscale":
        return _filter(cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY), spec)[..., np.newaxis]
    return _filter(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), spec)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Map prepared uint8 pixels to the float values the model was trained on."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return (pixels.astype(np.float32) - mean) / std


def quantize_table(spec: PreprocessSpec, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Return a (channels, 256) table: pixel value -> the model's integer input, per channel.

    Normalization and quantization are folded once here, in float64, exactly as the converter's
    ``round(x / scale) + zero_point`` with saturation; per frame only a table lookup remains.
    """
    info = np.iinfo(INTEGER_DTYPES[dtype])
    pixels = np.arange(256, dtype=np.float64)
    mean = np.broadcast_to(np.asarray(spec.mean, dtype=np.float64), (spec.channels,))
    std = np.broadcast_to(np.asarray(spec.std, dtype=np.float64), (spec.channels,))
    real = (pixels[np.newaxis, :] - mean[:, np.newaxis]) / std[:, np.newaxis]
    quantized = np.round(real / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(INTEGER_DTYPES[dtype])


def quantize(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map prepared uint8 pixels (h, w, c) through ``quantize_table``'s table."""
    if table.shape[0] == 1:
        return table[0][pixels]
    return table[np.arange(table.shape[0]), pixels]
