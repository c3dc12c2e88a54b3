import cv2
import numpy as np
import pytest

from edge.preprocess import (
    CONTRACT_VERSION,
    PreprocessSpec,
    halve,
    halving_ahead,
    normalize,
    prepare,
    quantize,
    quantize_table,
)


def spec(**kw) -> PreprocessSpec:
    return PreprocessSpec(**{"height": 8, "width": 8, **kw})


def test_pure_red_bgr_frame_arrives_as_red_rgb():
    red_bgr = np.zeros((20, 30, 3), np.uint8)
    red_bgr[..., 2] = 255
    pixels = prepare(red_bgr, spec(color="rgb"))
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    assert (pixels[..., 0] == 255).all() and (pixels[..., 1:] == 0).all()


def test_grayscale_output_has_one_channel_and_uses_luma_weights():
    green = np.zeros((16, 16, 3), np.uint8)
    green[..., 1] = 255
    pixels = prepare(green, spec(color="grayscale"))
    assert pixels.shape == (8, 8, 1)
    assert abs(int(pixels[0, 0, 0]) - round(0.587 * 255)) <= 1


@pytest.mark.parametrize(
    "image",
    [
        np.full((10, 10), 200, np.uint8),
        np.full((10, 10, 1), 200, np.uint8),
        np.dstack([np.full((10, 10, 3), 200, np.uint8), np.zeros((10, 10, 1), np.uint8)]),
        np.full((10, 10, 3), 200 * 257, np.uint16),
    ],
    ids=["gray-2d", "gray-3d", "bgra", "16-bit"],
)
def test_decoder_variants_become_the_same_rgb_pixels(image):
    pixels = prepare(image, spec())
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3)
    assert (pixels == 200).all()


def test_center_crop_keeps_the_middle_of_a_wide_frame():
    frame = np.zeros((10, 30, 3), np.uint8)
    frame[:, :10] = 255  # a white left third, cropped away
    pixels = prepare(frame, spec(height=10, width=10, resize="center_crop"))
    assert (pixels == 0).all()


def test_squash_keeps_the_whole_frame():
    frame = np.zeros((10, 30, 3), np.uint8)
    frame[:, :15] = 255
    pixels = prepare(frame, spec(height=10, width=10, resize="squash"))
    assert (pixels[:, :4] == 255).all() and (pixels[:, 6:] == 0).all()


def test_letterbox_pads_above_and_below_a_wide_frame():
    frame = np.full((10, 20, 3), 255, np.uint8)
    pixels = prepare(frame, spec(height=20, width=20, resize="letterbox", pad_value=7))
    assert (pixels[:5] == 7).all() and (pixels[15:] == 7).all() and (pixels[5:15] == 255).all()


def test_quantize_table_folds_normalization_and_quantization():
    s = spec(color="grayscale", mean=(127.5,), std=(127.5,))
    table = quantize_table(s, scale=1 / 128, zero_point=0, dtype="int8")
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    expected = np.clip(np.round(normalize(pixels, s).astype(np.float64) * 128), -128, 127)
    assert np.array_equal(quantize(pixels, table).astype(np.float64), expected)


def test_raw_pixel_models_get_pixel_minus_128():
    table = quantize_table(spec(color="grayscale"), scale=1.0, zero_point=-128, dtype="int8")
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    assert np.array_equal(quantize(pixels, table).astype(int), pixels.astype(int) - 128)


def test_per_channel_table_applies_each_channels_mean():
    s = spec(mean=(0.0, 100.0, 200.0), std=(1.0,))
    table = quantize_table(s, scale=1.0, zero_point=0, dtype="int8")
    pixels = np.full((2, 2, 3), 100, np.uint8)
    assert quantize(pixels, table)[0, 0].tolist() == [100, 0, -100]


def test_uint8_table_saturates_at_255():
    table = quantize_table(spec(), scale=0.5, zero_point=0, dtype="uint8")
    assert table[0, 127] == 254 and table[0, 200] == 255


def test_problems_name_the_field_and_allowed_values():
    problems = PreprocessSpec(height=8, width=8, color="bgr", resize="stretch").problems()
    assert any("color must be one of rgb, grayscale" in p for p in problems)
    assert any("resize must be one of squash, center_crop, letterbox" in p for p in problems)


def opencv_area(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def halved_2x2(image: np.ndarray) -> np.ndarray:
    """2x2 averages rounded half up, written out in numpy: the contract, independent of OpenCV's fast path."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    sums = image.reshape(h, 2, w, 2, -1).astype(np.uint16).sum(axis=(1, 3))
    return ((sums + 2) >> 2).astype(np.uint8).reshape(h, w, *image.shape[2:])


@pytest.mark.parametrize("resize", ["squash", "center_crop", "letterbox"])
def test_contract_version_1_resizes_area_in_one_opencv_call_as_before(sized_frames, resize):
    frame = sized_frames["1080p"][0]
    s = spec(height=224, width=224, resize=resize, version=1)
    if resize == "squash":
        expected = opencv_area(frame, 224, 224)
    elif resize == "center_crop":
        expected = opencv_area(frame[:, 420:1500], 224, 224)
    else:
        expected = np.zeros((224, 224, 3), np.uint8)
        expected[49:175] = opencv_area(frame, 224, 126)
    assert np.array_equal(prepare(frame, s), cv2.cvtColor(expected, cv2.COLOR_BGR2RGB))


def test_contract_version_2_halves_by_2x2_averages_then_takes_the_rest_with_area(sized_frames):
    frame = sized_frames["1080p"][0]
    quarter = halved_2x2(halved_2x2(frame))  # 1920x1080 -> 480x270; a third halving would pass 224
    expected = cv2.cvtColor(opencv_area(quarter, 224, 224), cv2.COLOR_BGR2RGB)
    assert np.array_equal(prepare(frame, spec(height=224, width=224)), expected)
    assert spec(height=224, width=224).version == CONTRACT_VERSION == 2


@pytest.mark.parametrize(
    ("frame", "target", "halved"),
    [
        ((1080, 1920), (224, 224), (270, 480)),
        ((480, 640), (224, 224), (240, 320)),
        ((1080, 1920), (96, 96), (135, 240)),  # 135 is odd: no exact 2x2 averages past it
        ((563, 1001), (96, 96), (563, 1001)),
        ((480, 640), (32, 32), (60, 80)),  # 30 rows would not cover 32
        ((100, 100), (224, 224), (100, 100)),  # upscaling
    ],
)
def test_halving_stops_at_an_odd_side_and_before_a_side_drops_below_the_target(frame, target, halved):
    assert halve(np.zeros((*frame, 3), np.uint8), target[1], target[0]).shape[:2] == halved


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic"])
def test_contract_version_2_changes_only_area(sized_frames, interpolation):
    frame = sized_frames["720p"][0]
    old, new = (spec(height=96, width=96, interpolation=interpolation, version=v) for v in (1, 2))
    assert np.array_equal(prepare(frame, old), prepare(frame, new))


def test_an_unknown_contract_version_names_the_field_and_the_known_ones():
    assert any("version must be one of 1, 2 (got 3)" in p for p in spec(version=3).problems())


@pytest.mark.parametrize("decoded", ["bgr", "grey", "bgra", "odd"])
@pytest.mark.parametrize(("size", "color"), [(32, "grayscale"), (96, "rgb"), (224, "rgb")])
def test_halving_where_the_frame_is_decoded_changes_nothing_the_model_is_given(sized_frames, decoded, size, color):
    """The capture thread may run ``halve`` ahead of ``prepare`` (squash by area): the same pixels result."""
    frame = sized_frames["1080p" if decoded != "odd" else "odd"][0]
    frame = {
        "grey": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY),
        "bgra": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA),
    }.get(decoded, lambda f: f)(frame)
    s = spec(height=size, width=size, color=color)
    assert halving_ahead(s) == (size, size)
    early = halve(frame, *halving_ahead(s))
    assert early.shape[0] < frame.shape[0] or decoded == "odd"
    assert np.array_equal(prepare(early, s), prepare(frame, s))


@pytest.mark.parametrize(
    "changes",
    [{"resize": "center_crop"}, {"resize": "letterbox"}, {"interpolation": "linear"}, {"version": 1}],
)
def test_no_halving_ahead_where_it_would_change_the_pixels(changes):
    assert halving_ahead(spec(height=96, width=96, **changes)) is None
