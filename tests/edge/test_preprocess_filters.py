"""The contract's optional OpenCV filters: off by default, applied by ``prepare``, carried by the manifest."""

import json

import cv2
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.errors import EdgesightError
from edge.preprocess import PreprocessSpec, prepare
from tests.helpers import edit_manifest, written


def spec(**kw) -> PreprocessSpec:
    return PreprocessSpec(**{"height": 32, "width": 32, **kw})


def noisy_edge() -> np.ndarray:
    """A grey frame with a vertical step and Gaussian noise on it."""
    rng = np.random.default_rng(0)
    frame = np.full((32, 32, 3), 80, np.float64)
    frame[:, 16:] = 170
    return np.clip(frame + rng.normal(0, 20, frame.shape), 0, 255).astype(np.uint8)


def test_default_spec_applies_no_filter():
    frame = noisy_edge()
    assert np.array_equal(prepare(frame, spec()), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize("filters", [{"blur": 5}, {"denoise": 15.0}], ids=["blur", "denoise"])
def test_blur_and_denoise_reduce_noise(filters):
    frame = noisy_edge()
    plain, filtered = prepare(frame, spec()), prepare(frame, spec(**filters))
    # Noise within the flat left half, as the standard deviation of the pixels there.
    assert filtered[:, 2:12].std() < 0.6 * plain[:, 2:12].std()


def test_clahe_stretches_a_low_contrast_greyscale_frame():
    rng = np.random.default_rng(1)
    frame = rng.integers(100, 130, (32, 32), dtype=np.uint8)
    plain, equalized = prepare(frame, spec(color="grayscale")), prepare(frame, spec(color="grayscale", clahe=4.0))
    assert equalized.shape == (32, 32, 1) and equalized.dtype == np.uint8
    assert np.ptp(equalized) > 2 * np.ptp(plain)


def test_clahe_on_rgb_keeps_a_grey_frame_grey():
    frame = np.repeat(np.random.default_rng(2).integers(100, 130, (32, 32, 1), dtype=np.uint8), 3, axis=2)
    pixels = prepare(frame, spec(clahe=3.0)).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 2 and np.abs(pixels[..., 1] - pixels[..., 2]).max() <= 2


def test_sharpen_increases_the_step_at_an_edge():
    step = np.tile(np.where(np.arange(32) < 16, 60, 190).astype(np.uint8), (32, 1))
    frame = cv2.GaussianBlur(step, (7, 7), 0)
    plain, sharp = prepare(frame, spec(color="grayscale")), prepare(frame, spec(color="grayscale", sharpen=1.5))
    assert np.abs(np.diff(sharp[16, :, 0].astype(int))).max() > np.abs(np.diff(plain[16, :, 0].astype(int))).max()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"blur": 4}, "blur must be 0 (off) or an odd kernel side"),
        ({"blur": 1}, "blur must be 0 (off) or an odd kernel side"),
        ({"denoise": -1.0}, "denoise must be 0 (off) or positive"),
        ({"clahe": -2.0}, "clahe must be 0 (off) or positive"),
        ({"sharpen": -0.5}, "sharpen must be 0 (off) or positive"),
        ({"clahe_tiles": 0}, "clahe_tiles must be at least 1"),
    ],
)
def test_filter_problems_name_the_field(fields, message):
    assert any(message in p for p in spec(**fields).problems())


def test_filters_round_trip_through_the_manifest(tmp_path):
    filtered = spec(height=96, width=96, blur=3, clahe=2.0, clahe_tiles=4, sharpen=0.5, denoise=5.0)
    bundle = load_bundle(written(tmp_path, preprocess=filtered))
    assert bundle.manifest.preprocess == filtered


def test_a_manifest_without_filter_keys_loads_with_filters_off(tmp_path):
    bundle = written(tmp_path)

    def drop_filters(data):
        for key in ("denoise", "blur", "clahe", "clahe_tiles", "sharpen"):
            del data["preprocess"][key]

    edit_manifest(bundle, drop_filters)
    assert "blur" not in json.loads((bundle / "manifest.json").read_text())["preprocess"]
    loaded = load_bundle(bundle).manifest.preprocess
    assert (loaded.blur, loaded.denoise, loaded.clahe, loaded.sharpen) == (0, 0.0, 0.0, 0.0)


def test_an_invalid_filter_in_a_manifest_names_the_key(tmp_path):
    bundle = written(tmp_path)
    edit_manifest(bundle, lambda data: data["preprocess"].update(blur=2))
    with pytest.raises(EdgesightError, match="preprocess: blur must be 0"):
        load_bundle(bundle)
