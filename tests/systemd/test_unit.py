"""The unit file as systemd itself reads it: no warnings, and sandboxed to an exposure of at most 2.0."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edgesight.service"
pytestmark = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")


def installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this virtualenv, since verify insists the binary exists."""
    unit = tmp_path / "edgesight.service"
    binary = Path(sys.executable).parent / "edgesight"
    unit.write_text(UNIT.read_text().replace("/opt/edgesight/venv/bin/edgesight", str(binary)))
    return unit


def test_systemd_analyze_verify_prints_nothing(tmp_path):
    result = subprocess.run(
        ["systemd-analyze", "verify", str(installed_copy(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_security_exposure_is_at_most_2(tmp_path):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_the_unit_keeps_what_the_daemon_relies_on():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "RestartPreventExitStatus=78",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SupplementaryGroups=video",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=char-dma_heap rw",
    ):
        assert line in text.splitlines(), line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.MULTILINE)
