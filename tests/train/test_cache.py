"""The preprocessed-image cache: decoded once with the device's code, keyed by data and contract."""

import cv2
import numpy as np
import pytest

from edge.bundle import TensorSpec
from edge.fastprep import make_preparer
from edge.images import read_image
from edge.preprocess import CONTRACT_VERSION, CONTRACT_VERSIONS, PreprocessSpec, prepare
from tests.helpers import make_dataset, write_corrupt, write_format_zoo
from train.cache import prepared
from train.config import config_from_dict, run_config_from_dict
from train.data import discover

GREY16 = PreprocessSpec(height=16, width=16, color="rgb")


def zoo_dataset(tmp_path):
    root = make_dataset(tmp_path / "d", {"plain": 5})
    write_format_zoo(root / "zoo")
    write_corrupt(root / "zoo")
    return discover(root)


def row(dataset, images, relpath):
    index = [e.relpath for e in dataset.examples].index(relpath)
    return images.pixels[index]


def test_every_format_is_converted_to_8_bit_rgb(tmp_path):
    dataset = zoo_dataset(tmp_path)
    images = prepared(dataset, GREY16, tmp_path / "cache")
    assert images.pixels.dtype == np.uint8 and images.pixels.shape[1:] == (16, 16, 3)
    assert (row(dataset, images, "zoo/grey.png") == 200).all()
    assert row(dataset, images, "zoo/rgba.png")[0, 0].tolist() == [0, 255, 0]
    assert row(dataset, images, "zoo/palette.png")[0, 0].tolist() == [255, 0, 0]
    assert abs(int(row(dataset, images, "zoo/deep.png")[0, 0, 0]) - 40000 // 256) <= 1
    for name in ("blue.bmp", "blue.webp", "blue.tiff"):
        assert row(dataset, images, f"zoo/{name}")[0, 0].tolist() == [0, 0, 255], name


def test_exif_orientation_is_honoured(tmp_path):
    dataset = zoo_dataset(tmp_path)
    images = prepared(dataset, PreprocessSpec(height=20, width=10, color="grayscale"), tmp_path / "cache")
    rotated = row(dataset, images, "zoo/rotated.jpg")[..., 0]
    # Stored white-left 20 wide × 10 high; turned clockwise it is white on top, 10 wide × 20 high.
    assert rotated[:8].min() > 200 and rotated[12:].max() < 50


def test_corrupt_files_are_skipped_counted_and_listed(tmp_path):
    dataset = zoo_dataset(tmp_path)
    images = prepared(dataset, GREY16, tmp_path / "cache")
    assert sorted(images.unreadable) == ["zoo/empty.png", "zoo/text.png", "zoo/truncated.jpg"]
    assert int((~images.readable).sum()) == 3 and len(images.readable) == len(dataset.examples)


def test_cached_pixels_are_what_the_device_prepares(tmp_path):
    dataset = zoo_dataset(tmp_path)
    spec = PreprocessSpec(height=8, width=8, color="grayscale", clahe=2.0)
    images = prepared(dataset, spec, tmp_path / "cache")
    for i, example in enumerate(dataset.examples):
        if images.readable[i]:
            assert np.array_equal(images.pixels[i], prepare(read_image(example.path), spec)), example.relpath


def test_second_run_reads_the_cache_memory_mapped(tmp_path):
    dataset = zoo_dataset(tmp_path)
    first = prepared(dataset, GREY16, tmp_path / "cache")
    second = prepared(dataset, GREY16, tmp_path / "cache")
    assert not first.from_cache and second.from_cache and second.path == first.path
    assert isinstance(second.pixels, np.memmap)
    assert np.array_equal(first.pixels, second.pixels) and second.unreadable == first.unreadable


def test_a_changed_image_or_contract_makes_a_new_cache_entry(tmp_path):
    dataset = zoo_dataset(tmp_path)
    first = prepared(dataset, GREY16, tmp_path / "cache")
    other_spec = prepared(dataset, PreprocessSpec(height=16, width=16, resize="letterbox"), tmp_path / "cache")
    assert not other_spec.from_cache and other_spec.path != first.path
    cv2.imwrite(str(dataset.root / "plain" / "000.png"), np.zeros((12, 12, 3), np.uint8))
    changed = prepared(discover(dataset.root), GREY16, tmp_path / "cache")
    assert not changed.from_cache and changed.path != first.path
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {
        first.path.name,
        other_spec.path.name,
        changed.path.name,
    }


@pytest.mark.parametrize("version", CONTRACT_VERSIONS)
def test_training_cache_and_device_prepare_frames_bit_for_bit_alike(tmp_path, sized_frames, version):
    """What a model is trained on is what the device feeds it: train.cache vs edge.fastprep, lossless files."""
    frames = [frame for name in ("480p", "1080p", "odd") for frame in sized_frames[name]]
    for label in ("a", "b"):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(tmp_path / "d" / label / f"{i}.png"), frame)
    dataset = discover(tmp_path / "d", min_per_class=1)
    for resize in ("squash", "center_crop", "letterbox"):
        for size, color in ((224, "rgb"), (96, "grayscale")):
            spec = PreprocessSpec(size, size, color, resize, version=version)
            cached = prepared(dataset, spec, tmp_path / "cache").pixels
            device = make_preparer(spec, TensorSpec("int8", (1, size, size, spec.channels), 1.0, -128))
            for row, example in zip(cached, dataset.examples, strict=True):
                frame = frames[int(example.path.stem)]
                assert np.array_equal(device(frame)[0].astype(np.int16) + 128, row), (spec, example.relpath)


def test_a_run_written_before_contract_versions_is_read_as_version_1():
    old = run_config_from_dict({"data": "d", "out": "o"}, "config.json")
    assert old.preprocess.version == 1
    assert config_from_dict({"data": "d", "out": "o"}, "flags").preprocess.version == CONTRACT_VERSION
