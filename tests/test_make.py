"""The Makefile, the user's front door: `make help` names every variable, and `make train` / `make quantize`
rebuild when their flags or images change, and only then."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, ROOT, make_dataset

FIT_FLAGS = "--size 16 --epochs 1 --model tiny"


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """make in the repository, as a user runs it (not with the variables of a `make test` around the tests)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_variable_of_the_makefile_and_the_readme():
    help_text = make("help").stdout
    listed = set(re.findall(r"^  ([A-Z][A-Z_]+) ", help_text, re.MULTILINE))
    defined = set(re.findall(r"^([A-Z][A-Z_]+) \?=", (ROOT / "Makefile").read_text(), re.MULTILINE))
    in_readme = set(re.findall(r"\b([A-Z][A-Z_]+)=", (ROOT / "README.md").read_text()))
    assert {"HOST", "BOOT", "WHEELS", "PLATFORM", "CONFIG", "BENCH_FLAGS"} <= defined
    assert defined <= listed, defined - listed
    assert in_readme & defined <= listed
    assert "  DATA " in help_text and "[data/digits]" in help_text  # with its value


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Path]:
    """A user's image folder, run and bundle paths, make's stamps, and a virtualenv (this one, seen through
    a folder whose install stamp is fresh, so that make never reinstalls it)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "bin").symlink_to(BIN)
    (venv / ".installed-edge-train-test-deploy").touch()
    return {
        "VENV": venv,
        "DATA": make_dataset(tmp_path / "photos", {"cat": 10, "dog": 10}, size=16),
        "RUN": tmp_path / "runs" / "photos",
        "BUNDLE": tmp_path / "bundles" / "photos",
        "STAMPS": tmp_path / "stamps",
    }


def variables(workspace: dict[str, Path], **more: str) -> list[str]:
    return [f"{name}={value}" for name, value in {**workspace, "FIT_FLAGS": FIT_FLAGS, **more}.items()]


def up_to_date(target: str, workspace: dict[str, Path], **more: str) -> bool:
    """`make -q`: whether make would build nothing for ``target``."""
    return make("-q", target, *variables(workspace, **more)).returncode == 0


@pytest.mark.slow
def test_train_and_quantize_rebuild_when_flags_or_images_change_not_when_setup_cfg_does(workspace):
    result = make("train", *variables(workspace))
    assert result.returncode == 0, result.stderr
    assert (workspace["RUN"] / "model.keras").is_file()
    assert up_to_date("train", workspace)
    assert "Nothing to be done for 'train'" in make("train", *variables(workspace)).stdout

    # New flags, or a changed image folder, are a new model.
    assert not up_to_date("train", workspace, FIT_FLAGS=FIT_FLAGS + " --seed 7")
    (workspace["DATA"] / "cat" / "extra.png").write_bytes((workspace["DATA"] / "cat" / "000.png").read_bytes())
    assert not up_to_date("train", workspace)
    make("-t", "train", *variables(workspace))  # make records the model as rebuilt, without training again
    assert up_to_date("train", workspace)
    os.utime(workspace["DATA"] / "dog" / "003.png", (1, 1))  # an image replaced by an older file
    assert not up_to_date("train", workspace)
    make("-t", "train", *variables(workspace))

    # A reinstalled virtualenv (setup.cfg changed) reinstalls, and does not retrain.
    os.utime(workspace["VENV"] / ".installed-edge-train-test-deploy", (1, 1))
    plan = make("-n", "train", *variables(workspace)).stdout
    assert "pip install" in plan and "edgesight-train fit" not in plan
    (workspace["VENV"] / ".installed-edge-train-test-deploy").touch()

    # The bundle follows its model and its own flags.
    workspace["BUNDLE"].mkdir(parents=True)
    make("-t", "quantize", *variables(workspace))
    assert up_to_date("quantize", workspace)
    assert not up_to_date("quantize", workspace, QUANT_FLAGS="--max-drop 2.0 --io int8")
    make("-t", "train", *variables(workspace, FIT_FLAGS=FIT_FLAGS + " --seed 7"))
    assert not up_to_date("quantize", workspace, FIT_FLAGS=FIT_FLAGS + " --seed 7")
