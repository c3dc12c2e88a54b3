"""What the system tests share about the guest: the cache, the wheels and checkout it installs from, and
reading the service's state (systemd properties, its journal, its cgroup)."""

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import ROOT
from tests.vm.vm import Vm

CACHE = Path(os.environ.get("EDGESIGHT_VM_CACHE", ROOT / "build" / "vm"))
BUNDLES = "/var/lib/edgesight/bundles"
CGROUP = "/sys/fs/cgroup/system.slice/edgesight.service"


def wheels() -> Path:
    """Wheels for aarch64 / Python 3.11, prepared once per set of requirements (setup.cfg)."""
    key = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()[:16]
    out = CACHE / f"wheels-aarch64-{key}"
    if not (out / ".complete").exists():
        shutil.rmtree(out, ignore_errors=True)
        env = {**os.environ, "PIP": f"{sys.executable} -m pip"}
        subprocess.run(["bash", str(ROOT / "deploy" / "wheels.sh"), str(out)], check=True, env=env)
        (out / ".complete").touch()
    return out


def checkout(target: Path) -> Path:
    """The project's tracked files, as a Pi user's clone would have them."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def show(vm: Vm, *properties: str) -> dict[str, str]:
    flags = " ".join(f"-p {p}" for p in properties)
    out = vm.ssh(f"systemctl show edgesight --timestamp=us+utc {flags}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def epoch(timestamp: str) -> float:
    """systemd's ``--timestamp=us+utc`` form, e.g. ``Sun 2026-11-29 10:39:03.532123 UTC``."""
    return datetime.strptime(timestamp, "%a %Y-%m-%d %H:%M:%S.%f %Z").replace(tzinfo=UTC).timestamp()


def journal(vm: Vm, since: str = "") -> str:
    return vm.sudo(f"journalctl -u edgesight --no-pager -o cat {since}", timeout=60).stdout


def exposure(vm: Vm) -> float:
    """`systemd-analyze security`'s overall figure for the installed unit, on the guest's systemd."""
    security = vm.sudo("systemd-analyze security edgesight.service --no-pager | tail -1").stdout
    return float(security.split("exposure level for edgesight.service:")[1].split()[0])


def cgroup_memory(vm: Vm) -> dict[str, int]:
    """The service's cgroup now: memory.current and memory.peak (bytes), memory.events' counters (oom,
    oom_kill ...) and memory.stat's anon and file (bytes: process memory, and page cache it read)."""
    files = " ".join(f"{CGROUP}/memory.{name}" for name in ("current", "peak", "events", "stat"))
    current, peak, *rest = vm.ssh(f"cat {files}").stdout.splitlines()
    pairs = dict(line.split() for line in rest if line.strip())
    wanted = ("low", "high", "max", "oom", "oom_kill", "anon", "file")
    return {"current": int(current), "peak": int(peak), **{k: int(pairs[k]) for k in wanted}}
