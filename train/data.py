"""A class-per-subfolder image folder made into preprocessed arrays and a stable split.

Images are decoded with OpenCV and prepared by ``edge.preprocess``: the very code the device runs.
"""

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EXIT_DATA, EXIT_NO_INPUT, EdgesightError
from edge.images import image_files, read_image
from edge.preprocess import PreprocessSpec, prepare

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MIN_IMAGES_PER_CLASS = 5


@dataclass(frozen=True)
class Example:
    path: Path
    relpath: str  # relative to the dataset root, with '/' separators
    label: int


@dataclass(frozen=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]
    examples: tuple[Example, ...]
    fingerprint: str  # sha256 over every file's relative path and content


def discover(root: Path, min_per_class: int = MIN_IMAGES_PER_CLASS) -> Dataset:
    """Find the classes (sorted sub-folder names) and their images; refuse folders that cannot train."""
    root = Path(root)
    if not root.is_dir():
        raise EdgesightError(f"{root}: no such dataset folder (one sub-folder of images per class)", EXIT_NO_INPUT)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise EdgesightError(
            f"{root}: found {len(class_dirs)} class folder(s); a classifier needs at least 2 sub-folders of images",
            EXIT_DATA,
        )
    examples: list[Example] = []
    digest = hashlib.sha256()
    for label, class_dir in enumerate(class_dirs):
        files = image_files(class_dir)
        if len(files) < min_per_class:
            raise EdgesightError(
                f"{class_dir}: class {class_dir.name!r} has {len(files)} image(s); it needs at least {min_per_class}"
                " (add images or remove the folder)",
                EXIT_DATA,
            )
        for path in files:
            relpath = path.relative_to(root).as_posix()
            digest.update(relpath.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
            examples.append(Example(path, relpath, label))
    return Dataset(root, tuple(d.name for d in class_dirs), tuple(examples), digest.hexdigest())


def split_of(relpath: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Assign a file to a split by a hash of its path: stable when other images are added or removed."""
    bucket = int.from_bytes(hashlib.sha256(f"{seed}:{relpath}".encode()).digest()[:8], "big") / 2**64
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "val"
    return "train"


def split(dataset: Dataset, seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Map each relative path to its split; stratified by drawing per class, stable by hashing."""
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


def load_arrays(
    examples: list[Example], spec: PreprocessSpec, progress: Callable[[int], object] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode and prepare images: uint8 (n, h, w, c) pixels, int labels, and the paths that were skipped.

    ``progress`` is called with the number of images done so far.
    """
    pixels = np.empty((len(examples), spec.height, spec.width, spec.channels), dtype=np.uint8)
    labels = np.empty(len(examples), dtype=np.int64)
    skipped: list[str] = []
    kept = 0
    for done, example in enumerate(examples, start=1):
        if progress is not None:
            progress(done)
        image = read_image(example.path)
        if image is None:
            skipped.append(example.relpath)
            log.warning("%s: not a decodable image, skipped", example.path)
            continue
        pixels[kept] = prepare(image, spec)
        labels[kept] = example.label
        kept += 1
    return pixels[:kept], labels[:kept], skipped
