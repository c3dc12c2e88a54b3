"""`make deploy` against a running daemon on a local directory layout (HOST=local): switch and roll back.

The same script drives a Pi over ssh; the system test (tests/vm) runs it against the VM that way.
"""

import json
import subprocess

import pytest

from tests.helpers import ROOT, bundle_copy, get_json, local_device, status_or_none, wait_for

pytestmark = pytest.mark.slow


def deploy(daemon, bundle, wait_seconds: int = 60) -> subprocess.CompletedProcess:
    """deploy/deploy.sh (what `make deploy` runs) on this machine, reloading the test's daemon."""
    return subprocess.run(
        ["bash", "deploy/deploy.sh", "local", str(bundle)],
        cwd=ROOT, env=local_device(daemon, wait_seconds), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def live(daemon) -> str:
    return get_json(daemon.url + "/api/status")["model"]["version"]


def test_deploy_switches_then_rolls_back_a_bundle_that_does_not_come_up(daemon, digits_bundle, tmp_path):
    wait_for(lambda: status_or_none(daemon.url + "/api/status"), timeout=60, what="the daemon's HTTP status")
    assert live(daemon) == "1.0.0"

    good = bundle_copy(digits_bundle, tmp_path / "good", "2.0.0")
    result = deploy(daemon, good)
    assert result.returncode == 0, result.stderr
    assert "2.0.0 is live" in result.stderr
    assert str((daemon.bundles / "current").readlink()) == "2.0.0" and live(daemon) == "2.0.0"
    assert json.loads((daemon.bundles / "2.0.0" / "manifest.json").read_text())["version"] == "2.0.0"

    # Only loading tells this flatbuffer is garbage: the daemon refuses it and says so in its status, and
    # deploy switches back as soon as it reads that, without waiting out its deadline.
    bad = bundle_copy(digits_bundle, tmp_path / "bad", "3.0.0-corrupt", corrupt=True)
    result = deploy(daemon, bad)
    assert result.returncode == 1
    assert "the daemon refused 3.0.0-corrupt (" in result.stderr, result.stderr
    assert "3.0.0-corrupt did not come up" in result.stderr and "switching back to 2.0.0" in result.stderr
    assert str((daemon.bundles / "current").readlink()) == "2.0.0"
    frames = get_json(daemon.url + "/api/status")["counters"]["frames"]
    wait_for(lambda: get_json(daemon.url + "/api/status")["counters"]["frames"] > frames + 10, what="classifying")
    assert live(daemon) == "2.0.0" and daemon.poll() is None
    assert not list(daemon.bundles.glob(".incoming-*")) and not (daemon.bundles / ".current.new").exists()


def test_deploy_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    result = subprocess.run(
        ["make", "--no-print-directory", "deploy", "HOST=local", f"BUNDLE={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"{tmp_path}: not a bundle (no manifest.json); build one with make quantize" in result.stderr
