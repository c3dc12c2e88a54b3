"""Shared real parts: the digits dataset, a model trained on it once per session, its int8 bundle."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.digits import write_digits

    out = tmp_path_factory.mktemp("data") / "digits"
    write_digits(out)
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The preprocessed-image cache of the session's runs, out of the user's ~/.cache."""
    return tmp_path_factory.mktemp("cache")


# The digits recipe: small greyscale images; a flipped digit is another digit, so no flips.
DIGITS_FIT = {"size": 32, "color": "grayscale", "flip": "none", "epochs": 10, "patience": 4}


@pytest.fixture(scope="session")
def digits_run(digits_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from train.fit import FitConfig, fit

    out = tmp_path_factory.mktemp("runs") / "digits"
    return fit(FitConfig(data=str(digits_dir), out=str(out), cache_dir=str(cache_dir), **DIGITS_FIT))


@pytest.fixture(scope="session")
def small_digits(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 digits per class: for the tests that train several short runs."""
    out = tmp_path_factory.mktemp("data") / "small-digits"
    for class_dir in sorted(digits_dir.iterdir()):
        (out / class_dir.name).mkdir(parents=True)
        for path in sorted(class_dir.iterdir())[:30]:
            shutil.copy(path, out / class_dir.name / path.name)
    return out


@pytest.fixture(scope="session")
def digits_bundle(digits_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.quantize import quantize

    out = tmp_path_factory.mktemp("bundles") / "digits"
    quantize(digits_run.path, out)
    return out


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run one of the installed console scripts as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """The user sees one line naming the problem, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
