import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from train.data import class_weights, discover, duplicates, imbalance, split


def make_dataset(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i:03d}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def write_exif_rotated(path: Path) -> None:
    """A 20×10 (w×h) JPEG, white left half, whose EXIF orientation 6 says: turn it 90° clockwise."""
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)


def solid(bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full((16, 16, 3), bgr, np.uint8)


def write_format_zoo(folder: Path) -> None:
    """One image per awkward format, each of one colour (the EXIF one excepted)."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "grey.png"), np.full((16, 16), 200, np.uint8))
    cv2.imwrite(
        str(folder / "rgba.png"),
        np.dstack([solid((0, 255, 0)), np.full((16, 16), 128, np.uint8)]),
    )
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(folder / "palette.png")
    cv2.imwrite(str(folder / "deep.png"), np.full((16, 16), 40000, np.uint16))
    cv2.imwrite(str(folder / "blue.bmp"), solid((255, 0, 0)))
    cv2.imwrite(str(folder / "blue.webp"), solid((255, 0, 0)), [cv2.IMWRITE_WEBP_QUALITY, 101])
    cv2.imwrite(str(folder / "blue.tiff"), solid((255, 0, 0)))
    write_exif_rotated(folder / "rotated.jpg")


def write_corrupt(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    return ["empty.png", "text.png", "truncated.jpg"]


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


def test_explicit_train_val_test_folders_are_the_split(tmp_path):
    for part, count in (("train", 6), ("val", 2), ("test", 3)):
        make_dataset(tmp_path / "d" / part, {"cat": count, "dog": count})
    dataset = discover(tmp_path / "d")
    assert dataset.explicit_split and dataset.classes == ("cat", "dog")
    assignment = split(dataset, seed=0, val_fraction=0.5, test_fraction=0.3)
    assert assignment["val/dog/001.png"] == "val" and assignment["train/cat/005.png"] == "train"
    assert sorted(assignment.values()).count("test") == 6
    assert {e.label for e in dataset.examples if e.relpath.startswith("test/dog/")} == {1}


def test_exact_duplicates_are_grouped_and_leaks_across_splits_flagged(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": 30, "b": 30})
    shutil.copy(root / "a" / "000.png", root / "b" / "copy-of-a0.png")
    dataset = discover(root)
    assignment = split(dataset, seed=0, val_fraction=0.2, test_fraction=0.2)
    groups = duplicates(dataset, assignment)
    assert [g.relpaths for g in groups] == [("a/000.png", "b/copy-of-a0.png")]
    assert groups[0].classes == ("a", "b")
    expected_leak = assignment["a/000.png"] != assignment["b/copy-of-a0.png"]
    assert groups[0].crosses_splits == expected_leak


def test_balanced_class_weights_and_imbalance_ratio():
    labels = np.asarray([0] * 10 + [1] * 40)
    assert class_weights(labels, 2) == [2.5, 0.625]
    assert imbalance([10, 40]) == 4.0
    assert class_weights(np.asarray([0, 1, 2, 0, 1, 2]), 3) == [1.0, 1.0, 1.0]
