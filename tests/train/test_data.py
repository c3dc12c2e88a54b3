from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.preprocess import PreprocessSpec
from train.data import discover, load_arrays, split


def make_dataset(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i:03d}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def test_classes_are_sorted_folder_names_and_images_are_found_recursively(tmp_path):
    root = make_dataset(tmp_path / "d", {"zebra": 5, "ant": 6})
    (root / "ant" / "more").mkdir()
    cv2.imwrite(str(root / "ant" / "more" / "x.jpg"), np.zeros((4, 4, 3), np.uint8))
    (root / "ant" / "notes.txt").write_text("not an image")
    dataset = discover(root)
    assert dataset.classes == ("ant", "zebra")
    assert sum(e.label == 0 for e in dataset.examples) == 7
    assert "ant/more/x.jpg" in {e.relpath for e in dataset.examples}


def test_fingerprint_changes_with_content(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": 5, "b": 5})
    before = discover(root).fingerprint
    cv2.imwrite(str(root / "a" / "000.png"), np.zeros((12, 12, 3), np.uint8))
    assert discover(root).fingerprint != before


@pytest.mark.parametrize(
    ("counts", "message", "code"),
    [
        ({"a": 5}, "at least 2 sub-folders", EXIT_DATA),
        ({"a": 5, "b": 0}, "class 'b' has 0 image(s)", EXIT_DATA),
        ({"a": 5, "b": 2}, "class 'b' has 2 image(s); it needs at least 5", EXIT_DATA),
    ],
)
def test_folders_that_cannot_train_are_refused(tmp_path, counts, message, code):
    with pytest.raises(EdgesightError) as error:
        discover(make_dataset(tmp_path / "d", counts))
    assert message in str(error.value) and error.value.exit_code == code


def test_missing_folder(tmp_path):
    with pytest.raises(EdgesightError) as error:
        discover(tmp_path / "absent")
    assert error.value.exit_code == EXIT_NO_INPUT


def test_split_is_stratified_and_stable_when_images_are_added(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": 40, "b": 40, "c": 6})
    before = split(discover(root), seed=0, val_fraction=0.2, test_fraction=0.2)
    for label in "abc":
        parts = {part for rel, part in before.items() if rel.startswith(f"{label}/")}
        assert parts == {"train", "val", "test"}, label
    cv2.imwrite(str(root / "a" / "new.png"), np.zeros((12, 12, 3), np.uint8))
    after = split(discover(root), seed=0, val_fraction=0.2, test_fraction=0.2)
    assert {rel: part for rel, part in after.items() if rel in before} == before
    assert split(discover(root), seed=1, val_fraction=0.2, test_fraction=0.2) != after


def test_load_arrays_prepares_with_the_device_code_and_skips_corrupt_files(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": 5, "b": 5})
    (root / "b" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    dataset = discover(root)
    pixels, labels, skipped = load_arrays(list(dataset.examples), PreprocessSpec(height=8, width=8, color="grayscale"))
    assert pixels.shape == (10, 8, 8, 1) and pixels.dtype == np.uint8
    assert labels.tolist() == [0] * 5 + [1] * 5
    assert skipped == ["b/zz_corrupt.jpg"]
