"""A class-per-subfolder image folder made into examples, a stable stratified split, and data checks.

Two layouts are read: ``DATA/<class>/...`` (split by a hash of each file's path) and
``DATA/{train,val,test}/<class>/...`` (the user's own split). Images are decoded and prepared by
``edge``: the very code the device runs (see ``train.cache`` for the preprocessed on-disk cache).
"""

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.images import image_files, read_image
from edge.preprocess import PreprocessSpec, prepare

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MIN_IMAGES_PER_CLASS = 5
# Largest class over smallest above this: warn, and class weights matter.
IMBALANCE_RATIO = 3.0


@dataclass(frozen=True)
class Example:
    path: Path
    relpath: str  # relative to the dataset root, with '/' separators
    label: int
    sha256: str = ""  # of the file's bytes: finds exact duplicates


@dataclass(frozen=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]
    examples: tuple[Example, ...]
    fingerprint: str  # sha256 over every file's relative path and content
    explicit_split: bool = False  # the folder has train/ (and val/, test/) sub-folders


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def has_explicit_split(root: Path) -> bool:
    names = {p.name for p in _class_dirs(root)}
    return "train" in names and bool(names & {"val", "test"}) and names <= set(SPLITS)


def class_of(relpath: str, explicit_split: bool) -> str:
    """The class name in a relative path: its first folder, or its second under train/val/test."""
    parts = relpath.split("/")
    return parts[1] if explicit_split else parts[0]


def discover(root: Path, min_per_class: int = MIN_IMAGES_PER_CLASS) -> Dataset:
    """Find the classes (sorted sub-folder names) and their images; refuse folders that cannot train."""
    root = Path(root)
    if not root.is_dir():
        raise EdgesightError(f"{root}: no such dataset folder (one sub-folder of images per class)", EXIT_NO_INPUT)
    explicit = has_explicit_split(root)
    parents = [root / part for part in SPLITS if (root / part).is_dir()] if explicit else [root]
    names = sorted({d.name for parent in parents for d in _class_dirs(parent)})
    if len(names) < 2:
        raise EdgesightError(
            f"{root}: found {len(names)} class folder(s); a classifier needs at least 2 sub-folders of images",
            EXIT_DATA,
        )
    index = {name: i for i, name in enumerate(names)}
    examples: list[Example] = []
    digest = hashlib.sha256()
    for parent in parents:
        for class_dir in _class_dirs(parent):
            for path in image_files(class_dir):
                relpath = path.relative_to(root).as_posix()
                content = hashlib.sha256(path.read_bytes()).digest()
                digest.update(relpath.encode() + b"\0" + content)
                examples.append(Example(path, relpath, index[class_dir.name], content.hex()))
    counts = Counter(e.label for e in examples)
    for name in names:
        found = counts[index[name]]
        if found < min_per_class:
            where = f"{root}/*/{name}" if explicit else f"{root / name}"
            raise EdgesightError(
                f"{where}: class {name!r} has {found} image(s); it needs at least {min_per_class}"
                " (add images or remove the folder)",
                EXIT_DATA,
            )
    return Dataset(root, tuple(names), tuple(examples), digest.hexdigest(), explicit)


def split_of(relpath: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Assign a file to a split by a hash of its path: stable when other images are added or removed."""
    bucket = int.from_bytes(hashlib.sha256(f"{seed}:{relpath}".encode()).digest()[:8], "big") / 2**64
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "val"
    return "train"


def split(dataset: Dataset, seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Map each relative path to its split; the user's folders if given, else stratified and stable by hashing."""
    if dataset.explicit_split:
        return {e.relpath: e.relpath.split("/")[0] for e in dataset.examples}
    assignment = {e.relpath: split_of(e.relpath, seed, val_fraction, test_fraction) for e in dataset.examples}
    for label, name in enumerate(dataset.classes):
        members = [e.relpath for e in dataset.examples if e.label == label]
        for wanted in ("test", "val"):
            if not any(assignment[r] == wanted for r in members):
                # A small class may hash nowhere into a split: move its lowest-hash train image there.
                spare = [r for r in members if assignment[r] == "train"]
                if len(spare) > 1:
                    chosen = min(spare, key=lambda r: hashlib.sha256(f"{seed}:{wanted}:{r}".encode()).digest())
                    assignment[chosen] = wanted
                    log.debug("class %s: moved %s to %s", name, chosen, wanted)
    return assignment


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with identical content; ``splits`` shows whether the copies leak across train/val/test."""

    sha256: str
    relpaths: tuple[str, ...]
    splits: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def crosses_splits(self) -> bool:
        return len(set(self.splits)) > 1


def duplicates(dataset: Dataset, assignment: dict[str, str]) -> list[DuplicateGroup]:
    """Groups of exact duplicates (same content hash), in path order."""
    by_hash: dict[str, list[Example]] = defaultdict(list)
    for example in dataset.examples:
        by_hash[example.sha256].append(example)
    groups = [
        DuplicateGroup(
            sha256=digest,
            relpaths=tuple(e.relpath for e in members),
            splits=tuple(assignment[e.relpath] for e in members),
            classes=tuple(dataset.classes[e.label] for e in members),
        )
        for digest, members in by_hash.items()
        if len(members) > 1
    ]
    return sorted(groups, key=lambda g: g.relpaths)


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels, minlength=num_classes).astype(int).tolist()


def class_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """Balanced weights, n / (classes × count): each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return [round(float(w), 6) for w in weights]


def imbalance(counts: list[int]) -> float:
    """Largest class over smallest (non-empty) class."""
    present = [c for c in counts if c > 0]
    return max(present) / min(present) if present else 1.0


@dataclass(frozen=True)
class ReadExamples:
    """Examples decoded and prepared as the model sees them; row i of ``pixels`` is ``examples[i]``."""

    examples: tuple[Example, ...]
    pixels: np.ndarray  # uint8 (n, h, w, c); rows of unreadable files are zeros
    readable: np.ndarray  # bool (n,)
    originals: tuple[np.ndarray, ...] = ()  # decoded BGR images of the readable files, in order, when kept

    @property
    def unreadable(self) -> list[str]:
        return [e.relpath for e, ok in zip(self.examples, self.readable, strict=True) if not ok]

    @property
    def good(self) -> list[Example]:
        return [e for e, ok in zip(self.examples, self.readable, strict=True) if ok]

    @property
    def good_pixels(self) -> np.ndarray:
        return np.asarray(self.pixels[self.readable])

    @property
    def labels(self) -> np.ndarray:
        """Labels of the readable examples."""
        return np.asarray([e.label for e in self.good], dtype=np.int64)


def read_examples(
    examples: Sequence[Example],
    spec: PreprocessSpec,
    *,
    out: np.ndarray | None = None,
    keep_originals: bool = False,
    progress: Callable[[int], object] | None = None,
) -> ReadExamples:
    """Decode each file and prepare it with the device's code; unreadable files are skipped and listed.

    The one loop every stage reads images with (cache, calibration, quantize and evaluate), so a file is
    judged unreadable the same way everywhere. ``out`` (a memory map) receives the rows, so a dataset larger
    than memory is never held whole; ``progress`` is called with the number of files read so far.
    """
    pixels = np.zeros((len(examples), spec.height, spec.width, spec.channels), np.uint8) if out is None else out
    readable = np.zeros(len(examples), dtype=bool)
    originals = []
    for i, example in enumerate(examples):
        image = read_image(example.path)
        if image is None:
            log.debug("%s: not a decodable image, skipped", example.path)
        else:
            pixels[i] = prepare(image, spec)
            readable[i] = True
            if keep_originals:
                originals.append(image)
        if progress is not None:
            progress(i + 1)
    return ReadExamples(tuple(examples), pixels, readable, tuple(originals))
