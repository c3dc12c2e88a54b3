"""The fast preprocessing path agrees with the training-time path bit for bit, on camera-sized frames."""

import dataclasses
import itertools

import numpy as np
import pytest

from edge.bundle import TensorSpec
from edge.fastprep import handles, make_preparer, reference_preparer
from edge.preprocess import CONTRACT_VERSIONS, INTERPOLATIONS, RESIZE_MODES, PreprocessSpec

TENSORS = [
    TensorSpec("int8", (), 1.0, -128),  # our bundles: raw pixels shifted by the zero point
    TensorSpec("int8", (), 0.0078125, 0),  # [-1, 1] inputs
    TensorSpec("uint8", (), 0.00392157, 0),  # a uint8-I/O conversion of [0, 1] inputs
]

NORMALIZATIONS = [((0.0,), (1.0,)), ((123.7, 116.3, 103.5), (58.4, 57.1, 57.4)), ((127.5,), (127.5,))]


@pytest.mark.parametrize("resolution", ["480p", "720p", "1080p", "odd"])  # the sized_frames fixture
def test_fast_path_is_bit_exact_with_the_reference(sized_frames, resolution):
    compared = 0
    sizes = [(96, 96), (224, 160), (32, 32)]
    geometries = itertools.product(RESIZE_MODES, INTERPOLATIONS, ("rgb", "grayscale"), sizes, CONTRACT_VERSIONS)
    # Normalization and quantization only change the table, so they take turns over the geometries.
    tables = itertools.cycle(itertools.product(TENSORS, NORMALIZATIONS))
    for (resize, interpolation, color, (height, width), version), (tensor, (mean, std)) in zip(
        geometries, tables, strict=False
    ):
        if color == "grayscale":
            mean, std = mean[:1], std[:1]
        spec = PreprocessSpec(height, width, color, resize, interpolation, mean, std, pad_value=114, version=version)
        assert handles(spec, tensor)
        fast, reference = make_preparer(spec, tensor), reference_preparer(spec, tensor)
        for frame in sized_frames[resolution]:
            expected = reference(frame)
            got = fast(frame)
            assert got.dtype == expected.dtype and got.shape == expected.shape == (1, height, width, spec.channels)
            assert np.array_equal(got, expected), (spec, tensor)
            compared += got.size
    assert compared > 1_000_000


def test_letterbox_padding_follows_a_change_of_frame_size(sized_frames):
    spec = PreprocessSpec(96, 96, resize="letterbox", pad_value=7)
    tensor = TENSORS[0]
    fast, reference = make_preparer(spec, tensor), reference_preparer(spec, tensor)
    wide = sized_frames["720p"][0]
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    for frame in (wide, tall, wide):
        assert np.array_equal(fast(frame), reference(frame))


@pytest.mark.parametrize(
    "image",
    [np.full((50, 60), 90, np.uint8), np.full((50, 60, 4), 90, np.uint8), np.full((50, 60, 3), 9000, np.uint16)],
    ids=["grey-2d", "bgra", "16-bit"],
)
def test_frames_the_fast_path_does_not_take_go_through_the_reference(image):
    spec, tensor = PreprocessSpec(32, 32), TENSORS[0]
    assert np.array_equal(make_preparer(spec, tensor)(image), reference_preparer(spec, tensor)(image))


def test_float_inputs_and_unknown_spec_fields_use_the_reference_path():
    spec = PreprocessSpec(32, 32)
    assert not handles(spec, TensorSpec("float32", (1, 32, 32, 3)))

    # A field added to the contract later (say an OpenCV filter) that this module does not implement.
    @dataclasses.dataclass(frozen=True)
    class FutureSpec(PreprocessSpec):
        clahe_clip: float = 0.0

    assert handles(FutureSpec(32, 32), TENSORS[0])  # left at its default: nothing new to do
    assert not handles(FutureSpec(32, 32, clahe_clip=2.0), TENSORS[0])
