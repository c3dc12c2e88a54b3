"""deploy/retrain.sh, the half of `make retrain` after fit and quantize, against a running daemon on a local
layout (HOST=local): fetch the live bundle, compare, write the run's report, deploy only a bundle not worse.

The whole loop from collected images to the reloaded daemon is tests/test_teach_loop.py.
"""

import json
import shutil
import subprocess

import pytest

from edge.bundle import load_bundle
from tests.helpers import BIN, ROOT, bundle_copy, get_json, local_device, status_or_none, wait_for

pytestmark = pytest.mark.slow


def retrain(daemon, run, bundle, data) -> subprocess.CompletedProcess:
    env = local_device(daemon) | {"TRAIN": str(BIN / "edgesight-train"), "MARGIN": "2"}
    return subprocess.run(
        ["bash", "deploy/retrain.sh", "local", str(run), str(bundle), str(data)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def live(daemon) -> str:
    return get_json(daemon.url + "/api/status")["model"]["version"]


def test_retrain_deploys_a_bundle_as_good_as_the_live_one_and_refuses_a_worse_one(
    daemon, digits_bundle, five_digits_bundle, digits_dir, tmp_path
):
    wait_for(lambda: status_or_none(daemon.url + "/api/status"), timeout=60, what="the daemon's HTTP status")
    assert live(daemon) == "1.0.0"

    # A bundle that lost half the classes: compared on every digit, refused; the live bundle stays.
    worse_run = shutil.copytree(load_bundle(five_digits_bundle).manifest.training["run"], tmp_path / "worse-run")
    result = retrain(daemon, worse_run, five_digits_bundle, digits_dir)
    assert result.returncode == 1, result.stderr
    assert "retrain: fetched the bundle live on local" in result.stderr
    assert "not deployed" in result.stderr and "keep the current bundle" in result.stdout
    assert (worse_run / "live-bundle" / "manifest.json").is_file()
    assert json.loads((worse_run / "live-bundle" / "manifest.json").read_text())["version"] == "1.0.0"
    comparison = json.loads((worse_run / "compare.json").read_text())
    assert comparison["passed"] is False and comparison["current"]["version"] == "1.0.0"
    report = (worse_run / "report" / "report.md").read_text()
    assert "## Against the live bundle" in report and "Decision: keep the current bundle" in report
    assert str((daemon.bundles / "current").readlink()) == "1.0.0" and live(daemon) == "1.0.0"

    # The same model under a new version: not worse, so it goes live.
    digits_run = load_bundle(digits_bundle).manifest.training["run"]
    run = shutil.copytree(digits_run, tmp_path / "run")
    same = bundle_copy(digits_bundle, tmp_path / "same", "2.0.0")
    result = retrain(daemon, run, same, digits_dir)
    assert result.returncode == 0, result.stderr
    assert "deploy: 2.0.0 is live on local" in result.stderr
    assert json.loads((run / "compare.json").read_text())["decision"].startswith("deploy: new ")
    assert "the test split of" in json.loads((run / "compare.json").read_text())["held_out"]
    assert live(daemon) == "2.0.0"
