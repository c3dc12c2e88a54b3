"""A bounded hyperparameter search with Optuna: learning rate, width, augmentation strength, regularization.

Each trial is an ordinary ``fit`` into ``OUT/trial-NNN`` (sharing the preprocessed cache), scored by its
best validation accuracy; the test split is never looked at. ``OUT/trials.csv`` holds the results table
and ``OUT/best.json`` the best settings, ready for ``edgesight-train fit DATA --config OUT/best.json``:
with the epochs of a full fit, not the short ones the trials ran.
"""

import csv
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import optuna

from edge.errors import EXIT_USAGE, EdgesightError
from train.config import DEFAULT_EPOCHS, FitConfig
from train.fit import fit
from train.run import HISTORY_FILE

log = logging.getLogger(__name__)

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
SEARCH_SPACE = {
    "learning_rate": "log-uniform 3e-4 .. 1e-2",
    "width": "0.5, 0.75, 1.0, 1.5",
    "augment": "0 .. 1.5",
    "dropout": "0 .. 0.5",
    "weight_decay": "0, or log-uniform 1e-6 .. 1e-3",
}


@dataclass(frozen=True)
class TuneResult:
    best: FitConfig
    best_val_accuracy: float
    trials: list[dict]
    final_epochs: int  # the epochs best.json sets for the full fit


def final_epochs(trial_epochs: int, asked: int | None) -> int:
    """Epochs of the full fit: as asked, else the default fit's, never fewer than a trial ran."""
    return asked if asked is not None else max(trial_epochs, DEFAULT_EPOCHS)


def best_settings(best: FitConfig, epochs: int) -> dict:
    """best.json: the best trial's settings for ``fit --config``, with the full fit's epochs."""
    return {k: v for k, v in asdict(best).items() if k not in ("data", "out")} | {"epochs": epochs}


def suggest(trial: optuna.Trial, base: FitConfig, out: Path) -> FitConfig:
    decay = trial.suggest_categorical("use_weight_decay", [False, True])
    return replace(
        base,
        out=str(out / f"trial-{trial.number:03d}"),
        learning_rate=trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
        width=trial.suggest_categorical("width", [0.5, 0.75, 1.0, 1.5]),
        augment=trial.suggest_float("augment", 0.0, 1.5),
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True) if decay else 0.0,
    )


def best_val_accuracy(run_dir: Path) -> float:
    with (run_dir / HISTORY_FILE).open() as f:
        return max(float(row["val_accuracy"]) for row in csv.DictReader(f))


def tune(base: FitConfig, out: Path, trials: int, timeout: float | None, final: int | None = None) -> TuneResult:
    """Run at most ``trials`` fits (and stop starting new ones after ``timeout`` seconds).

    ``final``: the epochs best.json sets for the full fit (default: see ``final_epochs``).
    """
    epochs = final_epochs(base.epochs, final)
    if epochs < 1:
        raise EdgesightError(f"--final-epochs must be at least 1 (got {epochs})", EXIT_USAGE)
    out.mkdir(parents=True, exist_ok=True)
    configs: dict[int, FitConfig] = {}

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, base, out)
        configs[trial.number] = config
        fit(config)
        return best_val_accuracy(Path(config.out))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed))
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=())
    rows = [
        {"trial": t.number, "val_accuracy": t.value, **{k: asdict(configs[t.number])[k] for k in SEARCH_SPACE}}
        for t in study.trials
        if t.value is not None
    ]
    with (out / TRIALS_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["trial", "val_accuracy", *SEARCH_SPACE])
        writer.writeheader()
        writer.writerows(rows)
    best = configs[study.best_trial.number]
    (out / BEST_FILE).write_text(json.dumps(best_settings(best, epochs), indent=2) + "\n")
    log.info("best trial %d: val accuracy %.4f", study.best_trial.number, study.best_value)
    return TuneResult(best, float(study.best_value), rows, epochs)
