"""The labelled dataset on the device, in the very layout training reads: ``<root>/<class>/<sha256>.jpg``.

Beside the class folders, ``provenance.jsonl`` says for each image when and where it was taken, why it was
kept, what the model suggested, which label a person chose and on which device: one JSON line per action
(``label``, ``unlabel``, ``rename``), appended and fsynced. Images are named by their content, so the same
image is stored once and a workstation merges copies from many devices without duplicates.
"""

import hashlib
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BufferedIOBase
from pathlib import Path
from typing import IO, Any

from edge.collect.durable import append_line, fsync_folder, remove_temp_files, write_atomic
from edge.collect.sample import Sample

log = logging.getLogger(__name__)

PROVENANCE = "provenance.jsonl"
INDEX = "index.json"  # in an export: sha256 → class of every image on the device, sent or not
IMAGE_NAME = re.compile(r"^[0-9a-f]{64}\.jpg$")
CLASS_NAME = re.compile(r"^[^\W_][\w .-]{0,63}$")
# train/val/test folders would make training read the folder as a split; "unknown" is the daemon's
# answer below the threshold.
RESERVED = frozenset({"train", "val", "test", "unknown"})


def class_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class folder, or None when it can."""
    if not CLASS_NAME.match(name) or name != name.strip():
        return f"{name!r} is not a class name: use 1 to 64 letters, digits, '_', '-', '.' or spaces"
    if name.lower() in RESERVED:
        return f"{name!r} is reserved (train, val and test are split folders; unknown is the below-threshold label)"
    return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Dataset:
    """Class folders of content-named JPEGs and their provenance log. Callers serialize writes.

    ``read_only`` (another process exporting while the daemon may write) creates and repairs nothing."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.log_path = self.root / PROVENANCE
        if read_only:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        leftovers = sum(remove_temp_files(folder) for folder in self._class_dirs())
        if leftovers:
            log.warning("%s: removed %d half-written image(s) an interruption left", self.root, leftovers)
        self._end_torn_line()

    def classes(self) -> dict[str, int]:
        """Class name → number of images, sorted by name."""
        return {d.name: sum(1 for p in d.iterdir() if IMAGE_NAME.match(p.name)) for d in self._class_dirs()}

    def images(self, label: str) -> list[str]:
        folder = self.root / label
        return sorted(p.name[:-4] for p in folder.iterdir() if IMAGE_NAME.match(p.name)) if folder.is_dir() else []

    def hashes(self) -> dict[str, str]:
        """sha256 → class of every image."""
        return {sha: label for label in self.classes() for sha in self.images(label)}

    def create_class(self, name: str) -> bool:
        """Make the class folder; False when it exists. Raises ValueError for a bad name."""
        problem = class_problem(name)
        if problem:
            raise ValueError(problem)
        folder = self.root / name
        if folder.is_dir():
            return False
        folder.mkdir()
        fsync_folder(self.root)
        return True

    def rename_class(self, old: str, new: str) -> None:
        """Raises ValueError for a bad or taken name, KeyError when ``old`` does not exist."""
        problem = class_problem(new)
        if problem:
            raise ValueError(problem)
        if not (self.root / old).is_dir() or class_problem(old):
            raise KeyError(old)
        if (self.root / new).exists():
            raise ValueError(f"a class {new!r} exists already")
        (self.root / old).rename(self.root / new)
        fsync_folder(self.root)
        self.record({"action": "rename", "from": old, "to": new})

    def add(self, jpeg: bytes, sample: Sample, label: str) -> tuple[str, bool]:
        """Store the image under ``label`` and record its provenance; (sha256, False) when it was there."""
        self.create_class(label)
        sha = hashlib.sha256(jpeg).hexdigest()
        path = self.root / label / f"{sha}.jpg"
        if path.exists():
            return sha, False
        write_atomic(path, jpeg)
        where = {"action": "label", "path": f"{label}/{sha}.jpg", "label": label, "suggested": sample.suggested}
        self.record(where | sample.to_json() | {"sha256": sha})
        return sha, True

    def read(self, label: str, sha: str) -> bytes | None:
        try:
            return (self.root / label / f"{sha}.jpg").read_bytes()
        except OSError:
            return None

    def remove(self, label: str, sha: str) -> bool:
        path = self.root / label / f"{sha}.jpg"
        if not path.is_file():
            return False
        path.unlink()
        fsync_folder(path.parent)
        self.record({"action": "unlabel", "path": f"{label}/{sha}.jpg", "label": label, "sha256": sha})
        return True

    def record(self, entry: dict[str, Any]) -> None:
        append_line(self.log_path, json.dumps({"time": now_iso(), **entry}, separators=(",", ":")).encode())

    def provenance(self) -> Iterator[dict[str, Any]]:
        """The log's entries in order; a line an interruption cut short is skipped."""
        try:
            lines = self.log_path.read_bytes().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry

    def export(self, out: IO[bytes] | BufferedIOBase, have: frozenset[str] = frozenset()) -> int:
        """Write an uncompressed tar stream (JPEGs do not compress) of every image whose sha256 is not in
        ``have``, as ``<class>/<sha256>.jpg``, after ``index.json`` (every image's class, so the caller sees
        labels that differ from its own) and a ``provenance.jsonl`` of their latest label entries.
        Returns the number of images written."""
        index = self.hashes()
        wanted = {sha: label for sha, label in index.items() if sha not in have}
        latest: dict[str, dict[str, Any]] = {}
        for entry in self.provenance():
            if entry.get("action") == "label" and entry.get("sha256") in wanted:
                latest[entry["sha256"]] = entry
        lines = []
        for sha, label in sorted(wanted.items(), key=lambda kv: (kv[1], kv[0])):
            entry = latest.get(sha, {"action": "label", "sha256": sha})
            lines.append(json.dumps(entry | {"label": label, "path": f"{label}/{sha}.jpg"}, separators=(",", ":")))
        written = 0
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, INDEX, json.dumps(index, separators=(",", ":"), sort_keys=True).encode())
            _add(tar, PROVENANCE, "".join(line + "\n" for line in lines).encode())
            for sha, label in sorted(wanted.items(), key=lambda kv: (kv[1], kv[0])):
                data = self.read(label, sha)
                if data is None:  # undone or renamed while the export ran
                    continue
                _add(tar, f"{label}/{sha}.jpg", data)
                written += 1
        return written

    def _class_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(d for d in self.root.iterdir() if d.is_dir() and class_problem(d.name) is None)

    def _end_torn_line(self) -> None:
        """A power cut mid-append can leave a line without its end: close it so the next entry stands alone."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(-1, io.SEEK_END)
                torn = f.read(1) != b"\n"
        except (FileNotFoundError, OSError):
            return
        if torn:
            append_line(self.log_path, b"")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))
