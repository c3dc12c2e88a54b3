"""`edgesight-train compare`: a new bundle against the current one, through the device's code path."""

import json

import pytest

from edge.bundle import load_bundle
from edge.classifier import Classifier
from edge.images import read_image
from tests.helpers import assert_one_line_error, run_cli
from train.compare import compare, table

pytestmark = pytest.mark.slow


def test_a_bundle_that_lost_classes_is_refused_and_the_better_one_passes(
    digits_bundle, five_digits_bundle, digits_dir, tmp_path
):
    worse = compare(five_digits_bundle, digits_bundle, digits_dir, margin=2.0)
    assert not worse.passed and worse.decision.startswith("keep the current bundle: new ")
    assert worse.held_out == f"every image of {digits_dir}"  # the five-digit run was trained elsewhere
    counts = {d.name: len(list(d.iterdir())) for d in digits_dir.iterdir()}
    assert worse.images == sum(counts.values()) and worse.support == counts
    assert worse.new.unknown_classes == ("5", "6", "7", "8", "9") and worse.current.unknown_classes == ()
    assert all(worse.new.per_class[d] == 0.0 for d in "56789")
    assert worse.new.accuracy <= sum(counts[d] for d in "01234") / worse.images < worse.current.accuracy
    # Both were measured by the daemon's classifier, frame by frame.
    classifier = Classifier(load_bundle(digits_bundle))
    images = sorted((digits_dir / "3").iterdir())
    right = sum(classifier.classify(read_image(path)).label == "3" for path in images)
    assert worse.current.per_class["3"] == pytest.approx(right / len(images))
    assert worse.current_right_new_wrong >= 0.9 * sum(counts[d] for d in "56789")
    assert worse.new_right_current_wrong < 50

    better = compare(digits_bundle, five_digits_bundle, digits_dir, margin=2.0)
    assert better.passed and better.decision.startswith("deploy: new ")
    assert "the current bundle has no label for: 5, 6, 7, 8, 9" in table(better)


def test_the_held_out_images_are_the_test_split_of_the_new_bundles_run(digits_bundle, digits_run, digits_dir):
    first = compare(digits_bundle, "none", digits_dir, margin=2.0)
    assert first.held_out.startswith(f"the test split of {digits_run.path}")
    assert first.images == sum(part == "test" for part in digits_run.split.values())
    assert first.current is None and first.passed and first.decision.startswith("deploy: nothing is live yet")


def test_compare_exits_1_when_the_new_bundle_is_worse_and_writes_the_figures(
    digits_bundle, five_digits_bundle, digits_dir, tmp_path
):
    out = tmp_path / "compare.json"
    refused = run_cli(
        "edgesight-train", "compare", str(five_digits_bundle), str(digits_bundle), str(digits_dir), "--out", str(out)
    )
    assert refused.returncode == 1, refused.stderr
    figures = json.loads(out.read_text())
    assert figures["passed"] is False and figures["margin_points"] == 2.0
    assert figures["new"]["version"] == load_bundle(five_digits_bundle).manifest.version
    lines = refused.stdout.splitlines()
    counts = {d.name: len(list(d.iterdir())) for d in digits_dir.iterdir()}
    assert lines[0] == f"held out: {sum(counts.values())} images, every image of {digits_dir}"
    assert [line.split()[:2] for line in lines[2:12]] == [[d, str(counts[d])] for d in "0123456789"]
    assert lines[12].startswith("overall") and "keep the current bundle" in refused.stdout

    # A margin as wide as the gap lets it through.
    gap = 100 * (figures["current"]["accuracy"] - figures["new"]["accuracy"])
    passed = run_cli(
        "edgesight-train", "compare", str(five_digits_bundle), str(digits_bundle), str(digits_dir),
        "--out", str(out), "--margin", f"{gap + 0.1:.2f}",
    )  # fmt: skip
    assert passed.returncode == 0, passed.stderr


def test_compare_refuses_a_folder_that_is_not_a_bundle(digits_bundle, digits_dir, tmp_path):
    result = run_cli("edgesight-train", "compare", str(tmp_path), str(digits_bundle), str(digits_dir))
    assert_one_line_error(result, 66, str(tmp_path))
