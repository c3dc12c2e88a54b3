"""Evaluation and its report: the metrics, float/int8/baseline side by side, a report a person can open."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest

from tests.helpers import assert_one_line_error, make_dataset, run_cli
from train.evaluate import Evaluation, expected_calibration_error, model_metrics, top_k_key

CLASSES = ("a", "b", "c")


def test_metrics_of_known_predictions():
    labels = np.asarray([0, 0, 1, 1, 2, 2])
    probabilities = np.asarray(
        [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]]
    )
    m = model_metrics(probabilities, labels, CLASSES, top_k=2)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["top2_accuracy"] == 1.0
    assert m["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": 0.8, "support": 2}
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = np.asarray([0, 0, 0, 0, 1])
    honest = np.tile([0.8, 0.2], (5, 1))  # 80 % confident, 80 % right
    assert expected_calibration_error(honest, labels) == pytest.approx(0.0)
    overconfident = np.tile([0.99, 0.01], (5, 1))
    overconfident[4] = [0.99, 0.01]
    assert expected_calibration_error(overconfident, np.asarray([1, 1, 0, 0, 1])) == pytest.approx(0.99 - 0.4)


def evaluation_of(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> Evaluation:
    """An Evaluation of one float model from given outputs, as `evaluate` would build it."""
    metrics = {
        "classes": list(classes),
        "images": len(labels),
        "unreadable": [],
        "evaluated_on": "test split",
        "models": {"float32": model_metrics(probabilities, labels, classes, top_k=3)},
    }
    pixels = np.zeros((len(labels), 8, 8, 1), np.uint8)
    return Evaluation(
        classes, pixels, [f"{i}.png" for i in range(len(labels))], labels, {"float32": probabilities}, metrics
    )


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("classes", [("a", "b"), ("a", "b", "c")])
def test_two_or_three_classes_are_measured_and_reported_without_warnings(classes, tmp_path):
    from train.report import write_report

    rng = np.random.default_rng(0)
    labels = np.arange(30) % len(classes)
    probabilities = rng.dirichlet(np.ones(len(classes)), 30)
    metrics = model_metrics(probabilities, labels, classes, top_k=3)
    # Top-k of k >= classes is 1.0 by construction: k is capped below the class count, or left out.
    expected = {2: None, 3: "top2_accuracy"}[len(classes)]
    assert top_k_key(metrics) == expected
    write_report(evaluation_of(probabilities, labels, classes), tmp_path / "r", "two or three", None)
    header = "| model | accuracy | " + ("top2 accuracy | " if expected else "") + "macro F1 |"
    assert header in (tmp_path / "r" / "report.md").read_text()


def test_a_calibration_bin_of_one_image_is_drawn_hollow_and_not_joined_into_the_curve():
    from train.report import calibration_figure

    labels = np.zeros(41, int)
    probabilities = np.tile([0.95, 0.05], (41, 1))
    probabilities[40] = [0.45, 0.55]  # one image in the 0.5-0.6 bin, and it is wrong: accuracy 0 there
    figure = calibration_figure(evaluation_of(probabilities, labels, ("a", "b")))
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    curve = next(line for label, line in lines.items() if label.startswith("float32"))
    assert list(curve.get_ydata()) == [1.0]  # the 0.95 bin only: no dip to zero
    hollow = lines["hollow: fewer than 5 images"]
    assert list(hollow.get_ydata()) == [0.0] and hollow.get_markerfacecolor() == "none"
    assert hollow.get_linestyle() == "None" and hollow.get_color() == curve.get_color()


@pytest.mark.slow
def test_evaluate_reports_float_int8_and_baseline_side_by_side(digits_run, digits_bundle, tmp_path):
    trained = run_cli("edgesight-train", "baseline", digits_run.config.data, "--run", str(digits_run.path), timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "HOG + logistic regression" in trained.stdout
    out = tmp_path / "report"
    result = run_cli(
        "edgesight-train",
        "evaluate",
        str(digits_run.path),
        "--bundle",
        str(digits_bundle),
        "--out",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    models = metrics["models"]
    assert set(models) == {"float32", "int8", "baseline"}
    # The must-show figures: tiny on digits, int8 through the device path, at most 1 point below float.
    assert models["int8"]["accuracy"] >= 0.97
    assert models["float32"]["accuracy"] - models["int8"]["accuracy"] <= 0.01
    assert models["baseline"]["accuracy"] >= 0.9
    assert metrics["images"] == len(digits_run.examples("test"))
    for m in models.values():
        assert {"top3_accuracy", "macro_f1", "ece", "per_class", "confusion"} <= set(m)
        assert np.asarray(m["confusion"]).sum() == metrics["images"]
    assert 0.9 <= metrics["agreement_with_float32"]["int8"] <= 1.0
    for name in ("float32", "int8", "baseline"):
        assert f"{name:10} accuracy {models[name]['accuracy']:.4f}" in result.stdout


@pytest.mark.slow
def test_the_report_is_self_contained_and_its_plots_open(digits_run, digits_bundle, tmp_path):
    out = tmp_path / "report"
    result = run_cli(
        "edgesight-train",
        "evaluate",
        str(digits_run.path),
        "--bundle",
        str(digits_bundle),
        "--out",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) >= 5  # confusion, per class, calibration, training curves, misclassified or none
    assert not re.search(r"src='(?!data:)", page)  # nothing outside the file
    import base64

    for data in embedded:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and min(image.shape[:2]) >= 200
    markdown = (out / "report.md").read_text()
    for link in re.findall(r"\]\((plots/[^)]+)\)", markdown):
        assert (out / link).is_file(), link
    assert "| int8 |" in markdown and "Training curves" in markdown and "Confusion" in markdown


@pytest.mark.slow
def test_a_bundle_evaluates_on_a_folder_and_counts_unreadable_files(digits_bundle, digits_dir, tmp_path):
    data = tmp_path / "held-out"
    for label in ("3", "7"):
        (data / label).mkdir(parents=True)
        for path in sorted((digits_dir / label).iterdir())[:6]:
            shutil.copy(path, data / label / path.name)
    (data / "7" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "report"
    result = run_cli("edgesight-train", "evaluate", str(digits_bundle), str(data), "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 12 and metrics["unreadable"] == ["7/broken.png"]
    assert metrics["models"]["int8"]["per_class"]["3"]["support"] == 6
    assert metrics["models"]["int8"]["per_class"]["0"]["support"] == 0


@pytest.mark.slow
def test_a_bundle_evaluated_on_a_folder_reports_into_the_current_folder_not_beside_the_bundle(
    digits_bundle, digits_dir, tmp_path
):
    bundle = tmp_path / "bundles" / "digits"
    shutil.copytree(digits_bundle, bundle)
    data = tmp_path / "held-out"
    for label in ("3", "7"):
        (data / label).mkdir(parents=True)
        for path in sorted((digits_dir / label).iterdir())[:4]:
            shutil.copy(path, data / label / path.name)
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("edgesight-train", "evaluate", str(bundle), str(data), timeout=300, cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "digits-on-held-out-report" / "report.html").is_file()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["digits"]  # nothing written beside the bundle
    assert "digits-on-held-out-report/report.html" in result.stdout


@pytest.mark.slow
def test_after_a_refused_quantize_the_int8_column_is_the_earlier_bundle_labelled_as_such(
    digits_run, digits_bundle, tmp_path
):
    from train.evaluate import evaluate

    run = tmp_path / "run"
    shutil.copytree(digits_run.path, run)
    record = {"passed": False, "bundle": None, "refused": "the int8 model collapsed: it answers '1'"}
    (run / "quantize.json").write_text(json.dumps(record | {"last_good_bundle": str(digits_bundle)}))
    evaluation = evaluate(run)
    assert {"float32", "int8 (earlier bundle)"} <= set(evaluation.metrics["models"])
    assert "int8" not in evaluation.metrics["models"]
    (note,) = evaluation.metrics["notes"]
    assert "the last quantize was refused (the int8 model collapsed" in note and str(digits_bundle) in note

    (run / "quantize.json").write_text(json.dumps(record))  # refused, and nothing passed before
    evaluation = evaluate(run)
    assert not any(name.startswith("int8") for name in evaluation.metrics["models"])
    assert evaluation.metrics["notes"][0].startswith("no int8 column: the last quantize was refused")


def test_evaluating_something_that_is_neither_run_nor_bundle_is_one_line_error(tmp_path):
    result = run_cli("edgesight-train", "evaluate", str(tmp_path))
    assert_one_line_error(result, 66, "neither a run directory nor a bundle")


@pytest.mark.slow
def test_evaluating_a_folder_with_an_unknown_class_is_one_line_error(digits_bundle, tmp_path):
    data = make_dataset(tmp_path / "d", {"3": 2, "cat": 2})
    result = run_cli("edgesight-train", "evaluate", str(digits_bundle), str(data), timeout=300)
    assert_one_line_error(result, 65, "class folder 'cat' is not one of the model's labels")
