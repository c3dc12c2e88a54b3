"""The inbox: collected frames waiting for a label, each a JPEG and a JSON sidecar, under an exact size cap.

A pair is committed by its sidecar: the image is written (temp file, fsync, rename) before the sidecar,
and eviction removes the sidecar first, so a sidecar always has its whole image. A crash can leave temp
files and images without a sidecar; opening the inbox removes them. Room is made before anything is
written and temp files count, so the pairs in the folder never exceed ``max_bytes``, not even mid-write.
The data loop of issue 11 and the collector share this code (a second inbox holds discarded pairs).
"""

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from edge.collect.durable import fsync_folder, is_temp, write_atomic
from edge.collect.sample import Sample

log = logging.getLogger(__name__)

# <capture time in ms>-<start of the image's sha256>: sorting by id sorts by age, and an id is safe in a URL.
ITEM_ID = re.compile(r"^\d{13}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Item:
    id: str
    sample: Sample
    size: int  # bytes of the image and its sidecar together


def item_id(sample: Sample) -> str:
    return f"{round(sample.captured * 1000):013d}-{sample.sha256[:12]}"


class Inbox:
    """A folder of image + sidecar pairs, oldest evicted first; safe to share between threads."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.evicted = 0  # pairs removed to make room
        self.refused = 0  # pairs larger than the whole cap
        self._items: OrderedDict[str, Item] = OrderedDict()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Item]:
        with self._lock:
            return list(self._items.values())

    def get(self, key: str) -> Item | None:
        with self._lock:
            return self._items.get(key)

    def read(self, key: str) -> bytes | None:
        """The item's JPEG, or None when there is no such item (any more)."""
        with self._lock:
            if key not in self._items:
                return None
            try:
                return self._image(key).read_bytes()
            except OSError:
                return None

    def put(self, jpeg: bytes, sample: Sample) -> Item | None:
        """Store a pair, evicting the oldest to make room; None when it is larger than the whole cap.
        An identical image captured at the same millisecond is stored once. Raises OSError (nothing left
        behind) when the disk refuses."""
        sample = replace(sample, sha256=hashlib.sha256(jpeg).hexdigest())
        key = item_id(sample)
        sidecar = (json.dumps({**sample.to_json(), "bytes": len(jpeg)}, separators=(",", ":")) + "\n").encode()
        need = len(jpeg) + len(sidecar)
        with self._lock:
            if key in self._items:
                return self._items[key]
            if need > self.max_bytes:
                self.refused += 1
                log.warning("%s: a %d-byte pair exceeds the whole cap (%d bytes)", self.directory, need, self.max_bytes)
                return None
            evicted = 0
            while self._bytes + need > self.max_bytes:
                self._remove_oldest()
                evicted += 1
            if evicted:
                fsync_folder(self.directory)  # the room is made on disk before the new pair takes it
            try:
                write_atomic(self._image(key), jpeg)
                write_atomic(self._sidecar(key), sidecar)
            except OSError:
                self._image(key).unlink(missing_ok=True)
                raise
            item = Item(key, sample, need)
            self._items[key] = item
            self._bytes += need
            return item

    def remove(self, key: str) -> Item | None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._unlink(item)
            return item

    def _remove_oldest(self) -> None:
        _, item = self._items.popitem(last=False)
        self._unlink(item)
        self.evicted += 1

    def _unlink(self, item: Item) -> None:
        self._sidecar(item.id).unlink(missing_ok=True)  # the commit mark goes first
        self._image(item.id).unlink(missing_ok=True)
        self._bytes -= item.size

    def _image(self, key: str) -> Path:
        return self.directory / f"{key}.jpg"

    def _sidecar(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _recover(self) -> None:
        """Index the pairs on disk and remove what an interrupted write or eviction left behind."""
        images: dict[str, int] = {}
        sidecars: dict[str, Path] = {}
        leftovers = strangers = 0
        for path in self.directory.iterdir():
            if is_temp(path.name):
                path.unlink(missing_ok=True)
                leftovers += 1
            elif path.suffix in (".jpg", ".json") and ITEM_ID.match(path.stem) and path.is_file():
                if path.suffix == ".jpg":
                    images[path.stem] = path.stat().st_size
                else:
                    sidecars[path.stem] = path
            else:
                strangers += 1
        for key in sorted(images.keys() | sidecars.keys()):
            sample = _read_sidecar(sidecars[key], images[key]) if key in images and key in sidecars else None
            if sample is None:
                self._image(key).unlink(missing_ok=True)
                self._sidecar(key).unlink(missing_ok=True)
                leftovers += 1
                continue
            item = Item(key, sample, images[key] + sidecars[key].stat().st_size)
            self._items[key] = item
            self._bytes += item.size
        if leftovers:
            log.warning("%s: removed %d half-written or unpaired file(s)", self.directory, leftovers)
        if strangers:
            log.info("%s: %d file(s) that are not inbox pairs left alone (outside the cap)", self.directory, strangers)
        while self._bytes > self.max_bytes:  # the cap was lowered since the last run
            self._remove_oldest()


def _read_sidecar(path: Path, image_bytes: int) -> Sample | None:
    """The sidecar's sample, or None when it is unreadable or describes an image of another size."""
    try:
        document = json.loads(path.read_bytes())
        sample = Sample.from_json(document)
    except (OSError, ValueError):
        return None
    return sample if document.get("bytes") == image_bytes else None
