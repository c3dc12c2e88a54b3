"""What a person does on the /label page: label inbox images into classes, discard them, capture a frame
straight into a class, and undo the latest of these, one step at a time.

Labelling moves an image from the inbox into ``dataset/<class>/`` and records its provenance; discarding
moves it into a small second inbox (``discarded/``) so that an undo can bring it back. The undo history
lives in memory (the last ``UNDO_DEPTH`` actions) and is cleared by a class rename.
"""

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.collect.dataset import Dataset, class_problem
from edge.collect.inbox import Inbox
from edge.collect.sample import Sample

UNDO_DEPTH = 100
DISCARDED_SHARE = 0.1  # the discarded pairs kept for undo may take this share of the inbox's cap


@dataclass(frozen=True)
class Moved:
    """One image of an action: where it came from and where it went."""

    item_id: str
    sample: Sample
    label: str = ""  # the class it went into; "" for a discard
    sha256: str = ""
    created: bool = False  # False: the class already held the same image, so undo leaves it there


@dataclass(frozen=True)
class Action:
    kind: Literal["label", "discard", "capture"]
    moved: tuple[Moved, ...]


class Labelling:
    """The inbox, the discarded pairs and the dataset under one lock, with an undo history."""

    def __init__(self, state_dir: Path, inbox_max_bytes: int) -> None:
        self.inbox = Inbox(state_dir / "inbox", inbox_max_bytes)
        self.discarded = Inbox(state_dir / "discarded", max(1, int(inbox_max_bytes * DISCARDED_SHARE)))
        self.dataset = Dataset(state_dir / "dataset")
        self.lock = threading.RLock()
        self._done: deque[Action] = deque(maxlen=UNDO_DEPTH)

    @property
    def undo_depth(self) -> int:
        return len(self._done)

    def label(self, ids: list[str], label: str) -> int:
        """Move inbox items into ``label``; returns how many moved (ids no longer in the inbox are skipped).
        Raises ValueError for a bad class name."""
        problem = class_problem(label)
        if problem:
            raise ValueError(problem)
        with self.lock:
            moved = []
            for key in ids:
                item, jpeg = self.inbox.get(key), self.inbox.read(key)
                if item is None or jpeg is None:
                    continue
                sha, created = self.dataset.add(jpeg, item.sample, label)
                self.inbox.remove(key)
                moved.append(Moved(key, item.sample, label, sha, created))
            if moved:
                self._done.append(Action("label", tuple(moved)))
            return len(moved)

    def discard(self, ids: list[str]) -> int:
        with self.lock:
            moved = []
            for key in ids:
                item, jpeg = self.inbox.get(key), self.inbox.read(key)
                if item is None or jpeg is None:
                    continue
                self.discarded.put(jpeg, item.sample)
                self.inbox.remove(key)
                moved.append(Moved(key, item.sample))
            if moved:
                self._done.append(Action("discard", tuple(moved)))
            return len(moved)

    def capture(self, jpeg: bytes, sample: Sample, label: str, *, undoable: bool = True) -> tuple[str, bool]:
        """Put a frame straight into ``label`` (the live view's button, a burst); (sha256, created)."""
        with self.lock:
            sha, created = self.dataset.add(jpeg, sample, label)
            if undoable:
                self._done.append(Action("capture", (Moved("", sample, label, sha, created),)))
            return sha, created

    def rename_class(self, old: str, new: str) -> None:
        with self.lock:
            self.dataset.rename_class(old, new)
            self._done.clear()  # the history names the old folder

    def undo(self) -> Action | None:
        """Revert the latest action: labelled and discarded images go back to the inbox, a capture is
        removed. None when there is nothing to undo."""
        with self.lock:
            if not self._done:
                return None
            action = self._done.pop()
            for moved in action.moved:
                if action.kind == "discard":
                    jpeg = self.discarded.read(moved.item_id)
                    if jpeg is not None:
                        self.inbox.put(jpeg, moved.sample)
                        self.discarded.remove(moved.item_id)
                    continue
                jpeg = self.dataset.read(moved.label, moved.sha256)
                if jpeg is not None and action.kind == "label":
                    self.inbox.put(jpeg, moved.sample)
                if moved.created:
                    self.dataset.remove(moved.label, moved.sha256)
            return action
