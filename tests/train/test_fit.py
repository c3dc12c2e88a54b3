"""Training: reproducible with a seed, resumable, best checkpoint kept, data problems reported, all models."""

import csv
import json
import logging
import shutil
from dataclasses import replace

import pytest

from edge.bundle import load_bundle
from edge.classifier import Classifier
from tests.helpers import assert_one_line_error, make_dataset, run_cli, write_corrupt
from train.config import FitConfig
from train.fit import fit, resume_config
from train.pipeline import Batches
from train.quantize import quantize

SMALL = {"size": 16, "color": "grayscale", "flip": "none", "epochs": 3, "patience": 5}


def history(run_dir) -> list[dict]:
    with (run_dir / "history.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_the_same_seed_gives_the_same_test_accuracy(small_digits, cache_dir, tmp_path):
    accuracies = []
    for name in ("first", "second"):
        run = fit(FitConfig(data=str(small_digits), out=str(tmp_path / name), cache_dir=str(cache_dir), **SMALL))
        accuracies.append(json.loads((run.path / "metrics.json").read_text())["test_accuracy"])
    assert abs(accuracies[0] - accuracies[1]) <= 0.005, accuracies
    assert json.loads((tmp_path / "first" / "split.json").read_text()) == json.loads(
        (tmp_path / "second" / "split.json").read_text()
    )


@pytest.mark.slow
def test_an_interrupted_run_resumes_after_its_last_epoch(small_digits, cache_dir, tmp_path):
    config = FitConfig(data=str(small_digits), out=str(tmp_path / "run"), cache_dir=str(cache_dir), **SMALL)
    fit(replace(config, epochs=2))
    assert [r["epoch"] for r in history(tmp_path / "run")] == ["0", "1"]
    resumed = resume_config(tmp_path / "run", epochs=3)
    assert resumed.epochs == 3 and resumed.seed == config.seed
    run = fit(resumed, resume=True)
    assert [r["epoch"] for r in history(run.path)] == ["0", "1", "2"]
    assert {"best.keras", "last.keras", "model.keras"} <= {p.name for p in run.path.iterdir()}


@pytest.mark.slow
def test_resume_with_more_epochs_records_them_in_config_json(small_digits, cache_dir, tmp_path):
    config = FitConfig(data=str(small_digits), out=str(tmp_path / "run"), cache_dir=str(cache_dir), **SMALL)
    fit(replace(config, epochs=1))
    result = run_cli(
        "edgesight-train", "fit", str(small_digits), "--out", str(tmp_path / "run"), "--resume", "--epochs", "2",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 2
    assert [r["epoch"] for r in history(tmp_path / "run")] == ["0", "1"]


@pytest.mark.slow
def test_the_kept_model_is_the_epoch_with_the_best_validation_loss(digits_run, cache_dir):
    from train.cache import prepared
    from train.data import discover
    from train.fit import load_split

    dataset = discover(digits_run.config.data)
    images = prepared(dataset, digits_run.config.preprocess, cache_dir)
    val_rows, val_labels = load_split(dataset, digits_run.split, images)["val"]
    model = digits_run.load_model()
    loss = model.evaluate(Batches(images.pixels, val_rows, val_labels, 10, 32), verbose=0)[0]
    assert loss == pytest.approx(min(float(r["val_loss"]) for r in history(digits_run.path)), rel=1e-3)


@pytest.mark.slow
def test_the_run_reports_unreadable_files_duplicates_and_imbalance(tmp_path, cache_dir, caplog):
    data = make_dataset(tmp_path / "d", {"few": 8, "many": 40}, size=16)
    write_corrupt(data / "many")
    shutil.copy(data / "few" / "000.png", data / "many" / "dup.png")
    with caplog.at_level(logging.WARNING):
        run = fit(
            FitConfig(data=str(data), out=str(tmp_path / "run"), cache_dir=str(cache_dir), **SMALL | {"epochs": 1})
        )
    report = json.loads((run.path / "dataset.json").read_text())
    assert sorted(report["unreadable"]) == ["many/empty.png", "many/text.png", "many/truncated.jpg"]
    assert [g["relpaths"] for g in report["duplicates"]] == [["few/000.png", "many/dup.png"]]
    counts = report["class_counts"]
    assert counts["many"] > 3 * counts["few"] and report["imbalance"] >= 3
    assert report["class_weights"][0] > 1 > report["class_weights"][1]
    assert "classes are imbalanced" in caplog.text and "3 unreadable file(s) skipped" in caplog.text
    assert report["cache"].startswith(str(cache_dir))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "settings"),
    [
        ("resnet8", {"size": 32, "color": "rgb", "epochs": 4}),
        ("mobilenetv2", {"size": 96, "color": "rgb", "epochs": 12, "width": 0.35, "learning_rate": 1e-2}),
    ],
)
def test_resnet8_and_mobilenetv2_train_and_quantize_end_to_end(small_digits, cache_dir, tmp_path, model, settings):
    config = FitConfig(
        data=str(small_digits),
        out=str(tmp_path / "run"),
        model=model,
        cache_dir=str(cache_dir),
        flip="none",
        patience=10,
        **settings,
    )
    run = fit(config)
    result = quantize(run.path, tmp_path / "bundle", max_drop=100.0, representative=100)
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.manifest.training["architecture"] == model
    assert bundle.manifest.input.shape == (1, settings["size"], settings["size"], 3)
    assert Classifier(bundle).golden_check() >= 1
    assert result.int8_accuracy > 0.3, result  # 10 classes: well above chance after a few epochs


def test_fit_with_an_unknown_config_key_is_a_config_error(tmp_path, small_digits):
    (tmp_path / "best.json").write_text(json.dumps({"learning_rate": 0.001, "lr_typo": 1}))
    result = run_cli(
        "edgesight-train",
        "fit",
        str(small_digits),
        "--out",
        str(tmp_path / "r"),
        "--config",
        str(tmp_path / "best.json"),
    )
    assert_one_line_error(result, 78, "unknown key 'lr_typo'")


def test_fit_with_an_invalid_setting_is_a_config_error(tmp_path, small_digits):
    result = run_cli("edgesight-train", "fit", str(small_digits), "--out", str(tmp_path / "r"), "--blur", "4")
    assert_one_line_error(result, 78, "blur must be 0 (off) or an odd kernel side")


def test_resume_without_a_run_is_one_line_error(tmp_path, small_digits):
    result = run_cli("edgesight-train", "fit", str(small_digits), "--out", str(tmp_path / "r"), "--resume")
    assert_one_line_error(result, 66, "nothing to resume")
