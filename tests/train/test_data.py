import shutil

import cv2
import numpy as np
import pytest

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from tests.helpers import make_dataset
from train.data import class_weights, discover, duplicates, imbalance, split


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
