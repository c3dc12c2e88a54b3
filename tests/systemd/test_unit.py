"""The unit file as systemd itself reads it, with its drop-ins: no warnings, and sandboxed to an exposure
of at most 1.2."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.publish.server import HANDLER_THREADS

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "edgesight.service"
DROPINS = ("coral.conf", "ip-address-allow.conf")
pytestmark = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")


def installed_copy(tmp_path: Path, dropins: tuple[str, ...] = ()) -> Path:
    """The unit with ExecStart pointing at this virtualenv, since verify insists the binary exists, and
    ``dropins`` beside it in ``edgesight.service.d/``, where systemd reads them."""
    unit = tmp_path / "edgesight.service"
    binary = Path(sys.executable).parent / "edgesight"
    unit.write_text(UNIT.read_text().replace("/opt/edgesight/venv/bin/edgesight", str(binary)))
    if dropins:
        (tmp_path / "edgesight.service.d").mkdir()
        for name in dropins:
            shutil.copy(SYSTEMD / name, tmp_path / "edgesight.service.d" / name)
    return unit


@pytest.mark.parametrize("dropins", [(), DROPINS], ids=["unit", "with-drop-ins"])
def test_systemd_analyze_verify_prints_nothing(tmp_path, dropins):
    unit = installed_copy(tmp_path, dropins)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_security_exposure_is_at_most_1_2(tmp_path):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.2, result.stdout


def test_the_unit_keeps_what_the_daemon_relies_on():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "RestartPreventExitStatus=78",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=char-dma_heap rw",
        "PrivateUsers=yes",
        "MemoryDenyWriteExecute=yes",
    ):
        assert line in text.splitlines(), line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.MULTILINE)
    # More threads than the HTTP server's cap of connections leaves room for the rest of the daemon.
    tasks = int(re.search(r"^TasksMax=(\d+)$", text, re.MULTILINE).group(1))
    assert tasks >= HANDLER_THREADS + 48
    # The Coral's devices only through its drop-in, which install.sh adds where a Coral is plugged in.
    assert "char-usb_device" not in text and "char-apex" not in text
    coral = (SYSTEMD / "coral.conf").read_text().splitlines()
    assert "DeviceAllow=char-usb_device rw" in coral and "DeviceAllow=char-apex rw" in coral
    # The address allow-list is an example: every line of it stays a comment until an admin edits it.
    example = (SYSTEMD / "ip-address-allow.conf").read_text().splitlines()
    assert all(not line or line.startswith("#") for line in example)
