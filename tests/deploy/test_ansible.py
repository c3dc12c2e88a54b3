"""The fleet playbooks: both parse; the pull playbook runs against two local "Pis"; tests/vm runs the deploy
playbook against a booted Pi-like VM."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import BIN, ROOT

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
