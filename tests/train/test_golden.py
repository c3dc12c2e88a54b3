"""Golden samples as stored in a bundle."""

import cv2
import numpy as np

from edge.preprocess import PreprocessSpec
from train.golden import GOLDEN_MAX_SIDE, golden_image


def test_a_large_golden_image_is_shrunk_with_area_averaging():
    spec = PreprocessSpec(height=16, width=16)
    noise = np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    stored = cv2.imdecode(np.frombuffer(golden_image(noise, spec), np.uint8), cv2.IMREAD_COLOR)
    side = GOLDEN_MAX_SIDE * 16
    assert stored.shape == (round(256 * side / 320), side, 3)
    area = cv2.resize(noise, (side, stored.shape[0]), interpolation=cv2.INTER_AREA)
    bilinear = cv2.resize(noise, (side, stored.shape[0]), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(stored, area)
    assert not np.array_equal(stored, bilinear)


def test_a_small_golden_image_is_stored_unchanged():
    spec = PreprocessSpec(height=16, width=16)
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    stored = cv2.imdecode(np.frombuffer(golden_image(image, spec), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(stored, image)
