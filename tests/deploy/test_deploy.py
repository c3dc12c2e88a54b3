"""`make deploy` against a running daemon on a local directory layout (HOST=local): switch and roll back.

The same script drives a Pi over ssh; the system test (tests/vm) runs it against the VM that way. The
daemon's API wants a bearer token, as in production: deploy asks it through `edgesight status`.
"""

import json
import os
import subprocess

import pytest

from tests.helpers import (
    BIN,
    ROOT,
    assert_one_line_error,
    bundle_copy,
    get_json,
    local_device,
    run_cli,
    status_or_none,
    switch,
    wait_for,
)

pytestmark = pytest.mark.slow


def deploy(daemon, bundle, wait_seconds: int = 60) -> subprocess.CompletedProcess:
    """deploy/deploy.sh (what `make deploy` runs) on this machine, reloading the test's daemon."""
    return subprocess.run(
        ["bash", "deploy/deploy.sh", "local", str(bundle)],
        cwd=ROOT, env=local_device(daemon, wait_seconds), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def live(daemon) -> str:
    return status(daemon)["model"]["version"]


def status(daemon) -> dict:
    return get_json(daemon.url + "/api/status", daemon.token)


def test_deploy_switches_then_rolls_back_a_bundle_that_does_not_come_up(daemon_with_token, digits_bundle, tmp_path):
    daemon = daemon_with_token
    wait_for(lambda: status_or_none(daemon.url + "/api/status", daemon.token), timeout=60, what="the HTTP status")
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
    frames = status(daemon)["counters"]["frames"]
    wait_for(lambda: status(daemon)["counters"]["frames"] > frames + 10, what="classifying")
    assert live(daemon) == "2.0.0" and daemon.poll() is None
    assert not list(daemon.bundles.glob(".incoming-*")) and not (daemon.bundles / ".current.new").exists()


def test_deploy_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    result = subprocess.run(
        ["make", "--no-print-directory", "deploy", "HOST=local", f"BUNDLE={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"{tmp_path}: not a bundle (no manifest.json); build one with make quantize" in result.stderr


def test_edgesight_status_asks_the_daemon_with_the_configs_token(daemon_with_token, tmp_path):
    daemon = daemon_with_token
    wait_for(lambda: status_or_none(daemon.url + "/api/status", daemon.token), timeout=60, what="the HTTP status")
    wait_for(lambda: status(daemon)["health"]["ok"], what="a healthy daemon")
    line = run_cli("edgesight", "status", "--config", str(daemon.config))
    assert line.returncode == 0, line.stderr
    assert line.stdout.startswith(f"{daemon.url}: healthy; model digits 1.0.0;"), line.stdout
    document = run_cli("edgesight", "status", "--json", "--config", str(daemon.config))
    assert json.loads(document.stdout)["model"]["version"] == "1.0.0"

    tokenless = tmp_path / "tokenless.toml"
    tokenless.write_text("\n".join(x for x in daemon.config.read_text().splitlines() if "token_file" not in x))
    assert_one_line_error(
        run_cli("edgesight", "status", "--config", str(tokenless)), 78, "refused: HTTP 401", "[http] token_file"
    )
    no_http = tmp_path / "no-http.toml"
    no_http.write_text(daemon.config.read_text().split("[http]")[0])
    assert_one_line_error(run_cli("edgesight", "status", "--config", str(no_http)), 78, "no [http] section")
    daemon.kill()
    daemon.wait(30)
    assert_one_line_error(run_cli("edgesight", "status", "--config", str(daemon.config)), 69, "cannot reach")


def test_deploy_changes_nothing_when_the_config_gives_no_way_to_ask_the_daemon(digits_bundle, tmp_path):
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    bundle_copy(digits_bundle, bundles / "1.0.0", "1.0.0")
    switch(bundles, "1.0.0")
    config = tmp_path / "edgesight.toml"
    config.write_text(f'[source]\nuri = "0"\n[model]\npath = "{bundles / "current"}"\n')  # no [http]
    env = {**os.environ, "STATE": str(tmp_path), "RELOAD": "false", "REMOTE_EDGESIGHT": str(BIN / "edgesight")}
    result = subprocess.run(
        ["bash", "deploy/deploy.sh", "local", str(bundle_copy(digits_bundle, tmp_path / "new", "2.0.0"))],
        cwd=ROOT, env={**env, "REMOTE_CONFIG": str(config)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 78, result.stderr
    assert "no [http] section" in result.stderr and "nothing was changed" in result.stderr
    assert str((bundles / "current").readlink()) == "1.0.0" and sorted(p.name for p in bundles.iterdir()) == [
        "1.0.0",
        "current",
    ]
