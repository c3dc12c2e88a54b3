"""The quantization gate: what it refuses, and the representative set it calibrates on."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EXIT_USAGE, EdgesightError
from train.config import FitConfig
from train.quantize import QuantizeResult, calibration_set, collapse_reason, gate, quantize, representative_files
from train.run import Run

CLASSES = ("a", "b", "c")


def result(float_accuracy: float, int8_accuracy: float, collapse: str = "", float_collapse: str = "") -> QuantizeResult:
    return QuantizeResult(
        Path("b"), "int8", float_accuracy, int8_accuracy, 1.0, 100, 100.0, 30.0, 300, collapse, float_collapse
    )


def test_a_drop_beyond_max_drop_is_refused_with_the_figures():
    assert gate(result(0.98, 0.975), max_drop=1.0) == ""
    reason = gate(result(0.98, 0.95), max_drop=1.0)
    assert "int8 test accuracy 0.9500 is 3.00 points below float 0.9800, more than --max-drop 1" in reason


def test_a_collapsed_model_is_refused_even_without_a_drop():
    assert "collapsed: it answers" in gate(result(0.34, 0.34, "it answers 'a' for 100% of the test images"), 5.0)


def test_a_collapsed_float_model_is_blamed_instead_of_int8():
    same = "its output is the same for all 30 test images"
    reason = gate(result(0.1, 0.1, collapse=same, float_collapse=same), 5.0)
    assert reason.startswith(f"the float model itself collapsed ({same}), so int8 is not the cause")
    assert "the int8 model collapsed" not in reason


@pytest.mark.parametrize("max_drop", [-0.5, float("nan"), 101.0])
def test_a_max_drop_outside_0_to_100_points_is_a_usage_error_before_any_work(tmp_path, max_drop):
    with pytest.raises(EdgesightError, match=r"--max-drop must be within 0\.\.100 accuracy points") as refused:
        quantize(tmp_path / "no-such-run", tmp_path / "b", max_drop=max_drop)
    assert refused.value.exit_code == EXIT_USAGE


def test_float_probabilities_that_barely_change_are_a_collapse():
    labels = np.arange(30) % 3
    probabilities = np.tile([0.5, 0.3, 0.2], (30, 1)) + np.linspace(0, 1e-3, 30)[:, None]
    assert "same for all 30" in collapse_reason(probabilities, labels, CLASSES, resolution=1 / 256)
    healthy = np.full((30, 3), 0.05)
    healthy[np.arange(30), labels] = 0.9
    assert collapse_reason(healthy, labels, CLASSES, resolution=1 / 256) == ""


def test_constant_outputs_are_a_collapse():
    outputs = np.tile([[-128, 127, -128]], (30, 1))
    outputs[3, 0] += 1  # one rounding step is still constant
    assert "same for all 30 test images" in collapse_reason(outputs, np.arange(30) % 3, CLASSES)


def test_one_class_for_nearly_every_image_is_a_collapse_but_not_when_the_truth_is_so():
    rng = np.random.default_rng(0)
    outputs = rng.integers(-128, 127, (40, 3))
    outputs[:, 1] = 127  # 'b' wins everywhere
    assert collapse_reason(outputs, np.arange(40) % 3, CLASSES) == "it answers 'b' for 100% of the test images"
    assert collapse_reason(outputs, np.ones(40, int), CLASSES) == ""


def test_a_healthy_model_is_not_a_collapse():
    labels = np.arange(30) % 3
    outputs = np.full((30, 3), -100)
    outputs[np.arange(30), labels] = 120
    assert collapse_reason(outputs, labels, CLASSES) == ""


def fake_run(counts: dict[str, int]) -> Run:
    """A Run read from nothing but its split: enough for choosing calibration files."""
    split = {f"{c}/{i:04d}.png": "train" for c, n in counts.items() for i in range(n)}
    split["a/test.png"] = "test"
    config = FitConfig(data="/nonexistent", out="/nonexistent")
    return Run(Path("/nonexistent"), config, tuple(counts), split, {})


def test_representative_set_is_class_stratified_fixed_and_sized():
    run = fake_run({"a": 600, "b": 300, "c": 3})
    chosen = representative_files(run, 300)
    per_class = {c: sum(r.startswith(f"{c}/") for r in chosen) for c in "abc"}
    assert per_class == {"a": 199, "b": 100, "c": 1}  # in proportion (600:300:3 of 300), at least one each
    assert "a/test.png" not in chosen
    assert representative_files(run, 300) == chosen


def test_unreadable_training_files_are_neither_listed_nor_counted_for_calibration(tmp_path):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for i in range(60):
            cv2.imwrite(str(data / name / f"{i:04d}.png"), np.full((8, 8, 3), 40 * i % 255, np.uint8))
    (data / "a" / "0003.png").write_bytes(b"known to the run as unreadable")
    (data / "b" / "0007.png").write_bytes(b"broken after the run was trained")
    split = {f"{c}/{i:04d}.png": "train" for c in "ab" for i in range(60)}
    config = FitConfig(data=str(data), out=str(tmp_path / "run"), size=8)
    run = Run(tmp_path / "run", config, ("a", "b"), split, {"unreadable": ["a/0003.png"]})
    ranked = representative_files(run, 100)
    assert "a/0003.png" not in ranked and "b/0007.png" in ranked and len(ranked) == 100
    chosen, pixels = calibration_set(run, 100)
    assert "b/0007.png" not in chosen
    assert len(chosen) == len(pixels) == 99 and pixels.shape[1:] == (8, 8, 3)


@pytest.mark.parametrize("count", [99, 501])
def test_representative_set_size_is_bounded(count):
    with pytest.raises(EdgesightError, match=r"--representative must be within 100\.\.500"):
        representative_files(fake_run({"a": 10, "b": 10}), count)


@pytest.mark.slow
def test_uint8_io_bundle_keeps_the_accuracy_and_quantizes_weights_per_channel(digits_run, tmp_path):
    import tensorflow as tf

    from edge.bundle import load_bundle
    from edge.classifier import Classifier
    from train.quantize import quantize

    result = quantize(digits_run.path, tmp_path / "b", io_type="uint8")
    bundle = load_bundle(tmp_path / "b")
    assert bundle.manifest.input.dtype == "uint8" and bundle.manifest.output.dtype == "uint8"
    assert bundle.manifest.input.scale == 1.0 and bundle.manifest.input.zero_point == 0  # raw pixels
    assert result.int8_accuracy >= 0.97 and result.drop_points <= 1.0
    assert Classifier(bundle).golden_check() == 10
    interpreter = tf.lite.Interpreter(model_path=str(bundle.model_path))
    # Convolution kernels (OHWI, int8): one scale per output channel, not one per tensor.
    kernels = [
        (len(d["quantization_parameters"]["scales"]), int(d["shape"][0]))
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][0] > 1
    ]
    assert kernels and all(scales == channels for scales, channels in kernels), kernels


@pytest.mark.slow
def test_a_collapsed_float_model_is_refused_with_its_table_and_no_bundle_is_written(
    digits_run, digits_bundle, tmp_path
):
    import json
    import shutil

    import keras

    from tests.helpers import assert_one_line_error, run_cli

    run = tmp_path / "run"
    shutil.copytree(digits_run.path, run)
    earlier = {"passed": True, "bundle": str(digits_bundle.resolve())}  # what a passed quantize recorded
    (run / "quantize.json").write_text(json.dumps(earlier))
    inputs = keras.Input((32, 32, 1), name="pixels")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))
    constant = keras.layers.Dense(
        10,
        activation="softmax",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([4.0] + [0.0] * 9),
    )(x)
    keras.Model(inputs, constant).save(run / "model.keras")
    result = run_cli(
        "edgesight-train", "quantize", str(run), "--out", str(tmp_path / "b"), "--max-drop", "100", timeout=300
    )
    assert_one_line_error(result, 65, "the float model itself collapsed", "int8 is not the cause", "no bundle written")
    assert "accuracy drop" in result.stdout and result.stdout.rstrip().endswith("refused")
    assert "test accuracy" in result.stdout and "float32" in result.stdout  # the table, even on refusal
    assert not (tmp_path / "b").exists()
    record = json.loads((run / "quantize.json").read_text())
    assert record["passed"] is False and record["bundle"] is None and "float model itself" in record["refused"]
    assert record["last_good_bundle"] == str(digits_bundle.resolve())  # evaluate falls back on it, labelled


@pytest.mark.slow
def test_quantize_builds_one_interpreter_writes_the_bundle_once_and_reads_it_back_once(
    digits_run, tmp_path, monkeypatch
):
    import train.quantize
    from edge.runtime import Model

    calls = {"interpreter": 0, "write": 0, "read": 0}
    real_init, real_write, real_load = Model.__init__, train.quantize.write_bundle, train.quantize.load_bundle

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Model, "__init__", counting("interpreter", real_init))
    monkeypatch.setattr(train.quantize, "write_bundle", counting("write", real_write))
    monkeypatch.setattr(train.quantize, "load_bundle", counting("read", real_load))
    quantize(digits_run.path, tmp_path / "b")
    assert calls == {"interpreter": 1, "write": 1, "read": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_negative_max_drop_is_a_usage_error_on_the_command_line(tmp_path):
    from tests.helpers import assert_one_line_error, run_cli

    result = run_cli("edgesight-train", "quantize", str(tmp_path), "--out", str(tmp_path / "b"), "--max-drop", "-1")
    assert_one_line_error(result, 64, "--max-drop must be within 0..100 accuracy points (got -1)")
