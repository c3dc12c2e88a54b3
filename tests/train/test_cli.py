"""The workstation command: quantize's side-by-side report and the bundle it writes, and error paths."""

import json

import pytest

from edge.bundle import load_bundle
from tests.helpers import assert_one_line_error, make_dataset, run_cli


@pytest.mark.slow
def test_quantize_prints_float_and_int8_accuracy_and_writes_a_complete_bundle(digits_run, tmp_path):
    result = run_cli("edgesight-train", "quantize", str(digits_run.path), "--out", str(tmp_path / "b"), timeout=300)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("test accuracy"))
    float_accuracy, int8_accuracy = map(float, row.split()[2:])
    assert float_accuracy >= 0.95 and int8_accuracy >= 0.95
    bundle = load_bundle(tmp_path / "b")
    manifest = bundle.manifest
    assert manifest.metrics["int8"]["accuracy"] == pytest.approx(int8_accuracy, abs=5e-5)
    assert "drop" in result.stdout and "passed" in result.stdout
    assert manifest.input.dtype == "int8" and manifest.output.dtype == "int8"
    assert manifest.input.scale == 1.0 and manifest.input.zero_point == -128  # raw pixels, Rescaling inside
    assert manifest.preprocess.color == "grayscale" and manifest.preprocess.height == 32
    assert len(manifest.golden) == 10 and {g.label for g in manifest.golden} == set(manifest.labels)
    assert manifest.dataset["fingerprint"] == json.loads((digits_run.path / "dataset.json").read_text())["fingerprint"]
    assert (tmp_path / "b" / "labels.txt").read_text().split() == list(manifest.labels)
    record = json.loads((digits_run.path / "quantize.json").read_text())
    assert record["passed"] and record["bundle"] == str((tmp_path / "b").resolve())
    representative = json.loads((digits_run.path / "representative.json").read_text())
    assert record["representative_images"] == len(representative) and 290 <= len(representative) <= 310
    assert {r.split("/")[0] for r in representative} == set(manifest.labels)
    assert all(digits_run.split[r] == "train" for r in representative)


@pytest.mark.slow
def test_run_directory_keeps_model_split_config_and_history(digits_run):
    names = {p.name for p in digits_run.path.iterdir()}
    assert {"model.keras", "split.json", "config.json", "history.csv", "dataset.json"} <= names
    split = json.loads((digits_run.path / "split.json").read_text())
    assert set(split.values()) == {"train", "val", "test"}
    assert json.loads((digits_run.path / "config.json").read_text())["size"] == 32


def test_fit_on_a_missing_folder_is_one_line_error(tmp_path):
    result = run_cli("edgesight-train", "fit", str(tmp_path / "absent"), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, 66, "no such dataset folder")


def test_fit_with_an_empty_class_is_one_line_error(tmp_path):
    data = make_dataset(tmp_path / "d", {"cat": 6, "dog": 0})
    result = run_cli("edgesight-train", "fit", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, 65, "class 'dog' has 0 image(s)")


def test_quantize_of_a_non_run_is_one_line_error(tmp_path):
    result = run_cli("edgesight-train", "quantize", str(tmp_path), "--out", str(tmp_path / "b"))
    assert_one_line_error(result, 66, "not a finished run")


def test_every_command_has_help_with_an_example():
    for args in ([], ["digits"], ["fit"], ["quantize"], ["evaluate"], ["baseline"], ["tune"]):
        result = run_cli("edgesight-train", *args, "--help")
        assert result.returncode == 0 and "example" in result.stdout, args
