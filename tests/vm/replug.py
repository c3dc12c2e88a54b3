"""Unplug the guest's vivid camera under the running service and plug it back; run as root in the guest.

    python3 replug.py --backoff 4.0

Unbinds the device from its driver, which is what a USB unplug does (the driver's remove runs while the
daemon has the device open), waits until the service's log says it backs off by at least --backoff
seconds, unloads the module (possible only once the daemon has let go of the device), loads it again,
and prints JSON: wall-clock times of the unplug, of the module load's start, and of /dev/video0's return.
Standard library only, so it runs on the guest's bare python3.
"""

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

NODE = Path("/dev/video0")
UNBIND = Path("/sys/bus/platform/drivers/vivid/unbind")


def wait_for_backoff(since: float, backoff: float, timeout: float) -> float:
    """The first backoff of at least ``backoff`` seconds the service logs after ``since``."""
    follow = subprocess.Popen(
        ["journalctl", "-u", "edgesight", "-f", "-o", "cat", f"--since=@{since:.3f}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        for line in follow.stdout:
            match = re.search(r"is not there .*; retrying in (\d+\.\d) s", line)
            if match and float(match.group(1)) >= backoff:
                return float(match.group(1))
            if time.monotonic() > deadline:
                break
    finally:
        follow.kill()
    raise SystemExit(f"replug: no backoff of {backoff} s logged within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backoff", type=float, default=4.0, help="re-plug once the service waits this long")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    unplugged = time.time()
    UNBIND.write_text("vivid.0")
    backoff = wait_for_backoff(unplugged, args.backoff, args.timeout)
    subprocess.run(["modprobe", "-r", "vivid"], check=True)
    plugging = time.time()
    load = subprocess.Popen(["modprobe", "vivid"])
    while not NODE.exists():
        time.sleep(0.002)
    node = time.time()
    if load.wait() != 0:
        raise SystemExit("replug: modprobe vivid failed")
    print(json.dumps({"unplugged": unplugged, "backoff_s": backoff, "modprobe": plugging, "node": node}))


if __name__ == "__main__":
    main()
