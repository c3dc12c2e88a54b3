"""Fault tests: a writer killed with SIGKILL at random points leaves no half file behind a sidecar, never
more than the cap on disk, and nothing unpaired once the inbox is opened again."""

import hashlib
import json
import random
import signal
import subprocess
import sys
import time

import pytest

from edge.collect.inbox import Inbox
from tests.helpers import ROOT

pytestmark = pytest.mark.system

CAP = 3_000_000
WRITER = """
import os, sys, time
from edge.collect.inbox import Inbox
from edge.collect.sample import Sample
inbox = Inbox(sys.argv[1], int(sys.argv[2]))
print("ready", flush=True)
n = 0
while True:
    n += 1
    data = b"\\xff\\xd8\\xff" + os.urandom(100_000 + (n * 7919) % 300_000)
    inbox.put(data, Sample(captured=time.time(), reason="interval", frame=n))
"""


def on_disk(folder) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()}


def test_random_kills_during_writes_leave_no_half_file_no_orphan_and_the_cap_holds(tmp_path):
    rng = random.Random(13)
    interrupted = 0
    for _round in range(25):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(CAP)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))  # the kill point, not a synchronization
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
        files = on_disk(tmp_path)
        assert sum(files.values()) <= CAP  # even mid-write, temp files included
        for name in files:
            if name.endswith(".json") and not name.startswith("."):
                sidecar = json.loads((tmp_path / name).read_bytes())  # a sidecar is whole ...
                image = (tmp_path / name.replace(".json", ".jpg")).read_bytes()  # ... and so is its image
                assert hashlib.sha256(image).hexdigest() == sidecar["sha256"] and len(image) == sidecar["bytes"]
        stems = {name.rsplit(".", 1)[0] for name in files if not name.startswith(".")}
        interrupted += any(name.startswith(".") for name in files) or len(stems) * 2 != len(files)

        inbox = Inbox(tmp_path, CAP)  # the next start cleans up
        after = on_disk(tmp_path)
        assert not [name for name in after if name.startswith(".")]
        assert {n[:-4] for n in after if n.endswith(".jpg")} == {n[:-5] for n in after if n.endswith(".json")}
        assert len(inbox) * 2 == len(after) and inbox.used_bytes == sum(after.values()) <= CAP
    assert interrupted >= 3, "the kills never landed inside a write: the test proves nothing"
    assert sum(on_disk(tmp_path).values()) > CAP - 800_000  # the inbox filled up: eviction ran under the kills
