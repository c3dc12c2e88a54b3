"""The fleet playbook parses and resolves its modules; tests/vm runs it against a booted Pi-like VM."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

PLAYBOOK = ROOT / "deploy" / "ansible" / "deploy-bundle.yml"
INVENTORY = ROOT / "deploy" / "ansible" / "inventory.example.ini"


def test_the_playbook_passes_ansibles_syntax_check_and_lists_its_tasks():
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(INVENTORY), str(PLAYBOOK)]
    check = subprocess.run([*command, "--syntax-check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    tasks = subprocess.run([*command, "--list-tasks", "-e", "bundle=x"], capture_output=True, text=True, timeout=120)
    assert tasks.returncode == 0, tasks.stderr
    for task in ("Copy the bundle into its versioned folder", "Wait until the daemon reports the new version"):
        assert task in tasks.stdout
