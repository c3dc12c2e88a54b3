"""A device's labelled dataset merged into a folder on the workstation, idempotent by content hash.

The workstation sends the sha256 of every image it has; the device answers with a tar of the others
(``DatasetApi`` export) and their provenance. Each image is checked against the hash in its name and
written atomically as ``<class>/<sha256>.jpg``; the provenance entries of the images added are appended
to the folder's ``provenance.jsonl`` with the device they came from. Pulling again adds nothing; an
image labelled differently here and on the device keeps the local label and is reported.

The device is reached over ssh, where ``edgesight dataset-export`` asks its own daemon on 127.0.0.1
with the token from its config (as ``deploy/deploy.sh`` checks the daemon), or at an http(s):// URL.
"""

import contextlib
import hashlib
import json
import logging
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edge.collect import REMOTE_CONFIG, REMOTE_EDGESIGHT
from edge.collect.client import post
from edge.collect.dataset import IMAGE_NAME, INDEX, PROVENANCE, class_problem, now_iso
from edge.collect.durable import append_line, fsync_folder, remove_temp_files, write_atomic
from edge.errors import EXIT_CONFIG, EXIT_DATA, EXIT_UNAVAILABLE, EdgesightError
from edge.images import image_files

log = logging.getLogger(__name__)

PROGRESS_EVERY = 200  # images between progress lines
MAX_MEMBER_BYTES = 64_000_000  # larger tar members are refused, not read into memory


@dataclass(frozen=True)
class Merged:
    added: dict[str, int]  # class → images added
    present: int  # already in the folder, with the same content
    conflicts: tuple[str, ...]  # "<sha256>: here <class>, there <class>": the local label was kept
    rejected: tuple[str, ...]  # tar members that are not <class>/<sha256>.jpg with matching content

    def summary(self, origin: str, into: Path) -> str:
        added = sum(self.added.values())
        classes = ", ".join(f"{name} {n}" for name, n in sorted(self.added.items()))
        line = f"{origin}: {added} new image(s) into {into}" + (f" ({classes})" if classes else "")
        line += f"; {self.present} already there"
        if self.conflicts:
            line += f"; {len(self.conflicts)} labelled differently here (local label kept)"
        if self.rejected:
            line += f"; {len(self.rejected)} refused as damaged or misnamed"
        return line


def local_hashes(root: Path) -> dict[str, str]:
    """sha256 → class of every image under ``root``'s class folders; files named by their hash are trusted."""
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for folder in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for path in image_files(folder):
            name = path.name
            sha = name[:-4] if IMAGE_NAME.match(name) else hashlib.sha256(path.read_bytes()).hexdigest()
            found.setdefault(sha, folder.name)
    return found


def check_target(root: Path) -> None:
    names = {d.name for d in root.iterdir() if d.is_dir()} if root.is_dir() else set()
    if "train" in names and names & {"val", "test"}:
        raise EdgesightError(
            f"{root}: holds train/val/test folders; pull into a folder of class folders instead", EXIT_CONFIG
        )


def merge(stream: IO[bytes], into: Path, origin: str, have: dict[str, str] | None = None) -> Merged:
    """Merge a device export read from ``stream`` into ``into``; ``have`` is ``local_hashes(into)``."""
    check_target(into)
    into.mkdir(parents=True, exist_ok=True)
    have = dict(local_hashes(into) if have is None else have)
    for folder in (d for d in into.iterdir() if d.is_dir()):
        remove_temp_files(folder)
    provenance: dict[str, dict[str, Any]] = {}
    added: dict[str, list[str]] = {}
    present, conflicts, rejected = 0, set(), []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.name in (INDEX, PROVENANCE) and member.isfile() and member.size <= MAX_MEMBER_BYTES:
                    if member.name == PROVENANCE:
                        provenance = _provenance(_read(tar, member))
                    else:
                        conflicts |= _conflicts(_read(tar, member), have)
                    continue
                label, _, name = member.name.partition("/")
                usable = member.isfile() and member.size <= MAX_MEMBER_BYTES and IMAGE_NAME.match(name)
                if not usable or class_problem(label):
                    rejected.append(member.name)
                    continue
                received = present + sum(map(len, added.values())) + 1
                if received % PROGRESS_EVERY == 0:
                    log.info("%s: %d images received", origin, received)
                data, sha = _read(tar, member), name[:-4]
                if hashlib.sha256(data).hexdigest() != sha:
                    rejected.append(member.name)
                    continue
                if sha in have:
                    present += 1
                    if have[sha] != label:
                        conflicts.add(f"{sha}: here {have[sha]}, there {label}")
                    continue
                (into / label).mkdir(exist_ok=True)
                write_atomic(into / label / name, data, sync_folder=False)
                have[sha] = label
                added.setdefault(label, []).append(sha)
    except (tarfile.TarError, EOFError) as e:
        raise EdgesightError(f"{origin}: the export was cut short or is not a tar stream ({e})", EXIT_DATA) from e
    finally:
        for label in added:
            fsync_folder(into / label)
        _record(into, origin, [sha for shas in added.values() for sha in shas], provenance)
    for name in rejected:
        log.warning("%s: %s refused (not <class>/<sha256>.jpg, or its content does not match its name)", origin, name)
    return Merged({k: len(v) for k, v in added.items()}, present, tuple(sorted(conflicts)), tuple(rejected))


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else b""


def _conflicts(data: bytes, have: dict[str, str]) -> set[str]:
    """Images both sides have under different classes, from the device's index."""
    try:
        index = json.loads(data)
    except ValueError:
        return set()
    if not isinstance(index, dict):
        return set()
    return {f"{sha}: here {have[sha]}, there {label}" for sha, label in index.items() if have.get(sha, label) != label}


def _provenance(data: bytes) -> dict[str, dict[str, Any]]:
    entries = {}
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                entries[entry["sha256"]] = entry
    return entries


def _record(into: Path, origin: str, shas: list[str], provenance: dict[str, dict[str, Any]]) -> None:
    """One write for all the new entries: the images' own, with where they were pulled from."""
    if not shas:
        return
    pulled = now_iso()
    lines = []
    for sha in shas:
        entry = provenance.get(sha, {"action": "label", "sha256": sha})
        entry = {**entry, "device": entry.get("device") or origin, "pulled_from": origin, "pulled": pulled}
        lines.append(json.dumps(entry, separators=(",", ":")))
    append_line(into / PROVENANCE, "\n".join(lines).encode())


@contextlib.contextmanager
def fetch(
    origin: str,
    have: list[str],
    *,
    token: str | None = None,
    ssh: str = "ssh",
    remote_edgesight: str = REMOTE_EDGESIGHT,
    remote_config: str = REMOTE_CONFIG,
    timeout_s: float = 60.0,
) -> Iterator[IO[bytes]]:
    """The device's export as a byte stream: from an http(s):// URL, from ``local`` (this machine, as
    deploy.sh's HOST=local), or over ssh from ``user@host`` (sudo there, as deploy.sh)."""
    if origin.startswith(("http://", "https://")):
        with post(origin, "/api/dataset/export", {"have": have}, token, timeout_s) as response:
            yield response
        return
    body = json.dumps({"have": have}).encode()
    command = [remote_edgesight, "dataset-export", "--config", remote_config]
    if origin != "local":
        command = [*shlex.split(ssh), "-o", "BatchMode=yes", origin, "sudo", "-n", *map(shlex.quote, command)]
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        raise EdgesightError(f"{origin}: cannot run {command[0]} ({e.strerror})", EXIT_UNAVAILABLE) from e
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
    assert stdin is not None and stdout is not None and stderr is not None  # all three are pipes
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(stderr.read()), name="pull-stderr", daemon=True)
    reader.start()
    try:
        stdin.write(body)  # the device reads it whole before it answers
        stdin.close()
        yield stdout
    finally:
        stdout.close()
        code = process.wait()
        reader.join()
    lines = b"".join(errors).decode(errors="replace").strip().splitlines()
    if code != 0:
        raise EdgesightError(f"{origin}: the export failed: {lines[-1] if lines else f'exit {code}'}", EXIT_UNAVAILABLE)
    for line in lines:
        log.info("%s says: %s", origin, line)


def read_have(stream: IO[bytes]) -> frozenset[str]:
    """The sha256 list a workstation sent (``{"have": [...]}``); empty when nothing was sent."""
    data = stream.read()
    if not data.strip():
        return frozenset()
    try:
        have = json.loads(data)["have"]
    except (ValueError, KeyError, TypeError) as e:
        raise EdgesightError(f'stdin: expected {{"have": [sha256, ...]}} ({e})', EXIT_DATA) from e
    return frozenset(h for h in have if isinstance(h, str))
