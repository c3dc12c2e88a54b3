"""The fleet playbooks: both parse; the pull playbook runs against two local "Pis", the deploy playbook
against a local daemon behind a token; tests/vm runs the deploy playbook against a booted Pi-like VM."""

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import BIN, ROOT, bundle_copy, get_json, status_or_none, wait_for

PLAYBOOK = ROOT / "deploy" / "ansible" / "deploy-bundle.yml"
INVENTORY = ROOT / "deploy" / "ansible" / "inventory.example.ini"
PULL = ROOT / "deploy" / "ansible" / "pull-data.yml"


def test_the_playbooks_pass_ansibles_syntax_check_and_list_their_tasks():
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(INVENTORY), str(PLAYBOOK)]
    check = subprocess.run([*command, "--syntax-check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    tasks = subprocess.run([*command, "--list-tasks", "-e", "bundle=x"], capture_output=True, text=True, timeout=120)
    assert tasks.returncode == 0, tasks.stderr
    for task in ("Copy the bundle into its versioned folder", "Wait until the daemon reports the new version"):
        assert task in tasks.stdout
    pull = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(PULL)]
    assert subprocess.run([*pull, "--syntax-check"], capture_output=True, text=True, timeout=120).returncode == 0


@pytest.mark.slow
def test_the_pull_playbook_gathers_every_pis_images_into_one_folder_with_their_origin(devices, tmp_path):
    pis = [devices("pi-garage", {"open": 3, "closed": 2}, seed=1), devices("pi-door", {"open": 2, "closed": 1}, seed=2)]
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[edgesight]\n"
        + "".join(
            f"{pi.name} ansible_connection=local ansible_become=false ansible_python_interpreter={sys.executable} "
            f"edgesight_bin={BIN / 'edgesight'} edgesight_config={pi.config}\n"
            for pi in pis
        )
    )
    data = tmp_path / "data"
    command = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PULL), "-e", f"data={data}"]
    env = {**os.environ, "TMPDIR": str(tmp_path), "ANSIBLE_HOST_KEY_CHECKING": "False"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    origin = {sha: pi.name for pi in pis for sha in pi.hashes()}
    on_disk = {p.stem: p.parent.name for p in data.glob("*/*.jpg")}
    assert on_disk == {sha: label for pi in pis for sha, label in pi.hashes().items()} and len(on_disk) == 8
    entries = [json.loads(line) for line in (data / "provenance.jsonl").read_text().splitlines()]
    assert {e["sha256"]: e["pulled_from"] for e in entries} == origin
    assert all(e["device"] == origin[e["sha256"]] for e in entries)

    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stdout.count("0 new image(s)") == 2, again.stdout[-3000:]
    assert len((data / "provenance.jsonl").read_text().splitlines()) == 8


@pytest.mark.slow
def test_the_deploy_playbook_rolls_out_and_back_on_a_daemon_behind_a_token(daemon_with_token, digits_bundle, tmp_path):
    daemon = daemon_with_token
    wait_for(lambda: status_or_none(daemon.url + "/api/status", daemon.token), timeout=60, what="the HTTP status")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[edgesight]\n"
        f"pi-local ansible_connection=local ansible_become=false ansible_python_interpreter={sys.executable} "
        f"edgesight_bin={BIN / 'edgesight'} edgesight_config={daemon.config} edgesight_state_dir={tmp_path} "
        f"edgesight_user={getpass.getuser()} edgesight_reload='kill -HUP {daemon.pid}'\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}

    def rollout(bundle: Path) -> subprocess.CompletedProcess:
        command = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), "-e", f"bundle={bundle}"]
        return subprocess.run([*command, "-e", "wait_seconds=30"], capture_output=True, text=True, timeout=300, env=env)

    result = rollout(bundle_copy(digits_bundle, tmp_path / "good", "2.0.0"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert get_json(daemon.url + "/api/status", daemon.token)["model"]["version"] == "2.0.0"

    result = rollout(bundle_copy(digits_bundle, tmp_path / "bad", "3.0.0-corrupt", corrupt=True))
    assert result.returncode != 0
    assert "3.0.0-corrupt did not come up on pi-local; switched back" in result.stdout
    assert (daemon.bundles / "current").resolve().name == "2.0.0"
    wait_for(lambda: get_json(daemon.url + "/api/status", daemon.token)["model"]["version"] == "2.0.0", what="2.0.0")
