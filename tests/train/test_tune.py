"""The bounded hyperparameter search: a results table and a best config that `fit --config` accepts."""

import csv
import json

import pytest

from tests.helpers import run_cli
from train.config import DEFAULT_EPOCHS, FitConfig, config_from_dict
from train.tune import best_settings, final_epochs


def test_best_json_carries_the_full_fits_epochs_not_the_short_trials():
    assert final_epochs(trial_epochs=5, asked=None) == DEFAULT_EPOCHS
    assert final_epochs(trial_epochs=80, asked=None) == 80  # never shorter than a trial
    assert final_epochs(trial_epochs=5, asked=12) == 12
    settings = best_settings(FitConfig(data="d", out="o", epochs=5, learning_rate=1e-3), epochs=40)
    assert settings["epochs"] == 40 and settings["learning_rate"] == 1e-3 and "data" not in settings


@pytest.mark.slow
def test_tune_writes_a_results_table_and_a_best_config_for_fit(small_digits, cache_dir, tmp_path):
    out = tmp_path / "tune"
    result = run_cli(
        "edgesight-train",
        "tune",
        str(small_digits),
        "--out",
        str(out),
        "--trials",
        "2",
        "--epochs",
        "1",
        "--size",
        "16",
        "--color",
        "grayscale",
        "--flip",
        "none",
        "--cache-dir",
        str(cache_dir),
        "--final-epochs",
        "12",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert all(3e-4 <= float(r["learning_rate"]) <= 1e-2 and 0 <= float(r["augment"]) <= 1.5 for r in rows)
    best = json.loads((out / "best.json").read_text())
    config = config_from_dict(best | {"data": str(small_digits), "out": str(tmp_path / "again")}, "best.json")
    assert config.size == 16 and config.epochs == 12  # the full fit's epochs, not the trials' 1
    assert "best.json sets epochs 12 for the full fit (the trials ran 1;" in result.stdout
    assert max(float(r["val_accuracy"]) for r in rows) == pytest.approx(
        float(result.stdout.split("best val accuracy ")[1].split(";")[0]), abs=1e-4
    )
    assert (out / "trial-000" / "model.keras").is_file() and (out / "trial-001" / "history.csv").is_file()
