"""Each image decoded and prepared once, into an on-disk cache keyed by the dataset and the contract.

The cache is a directory per key (dataset fingerprint + preprocessing contract): ``pixels.npy``,
uint8 (n, height, width, channels) in the order of ``Dataset.examples``, read back memory-mapped so
training streams from disk and datasets larger than memory work; ``meta.json`` lists the files and
those that could not be decoded. Changing an image or the contract makes a new key; a second run
with the same data starts at once.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.preprocess import PreprocessSpec
from train.data import Dataset, read_examples

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
PIXELS_FILE = "pixels.npy"
META_FILE = "meta.json"


@dataclass(frozen=True)
class PreparedImages:
    """Every example of a dataset as the model sees it; row i is ``dataset.examples[i]``."""

    pixels: np.ndarray  # uint8 (n, h, w, c), memory-mapped; rows of unreadable files are zeros
    readable: np.ndarray  # bool (n,)
    unreadable: tuple[str, ...]  # relative paths that could not be decoded
    path: Path
    from_cache: bool


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgesight`` (``~/.cache/edgesight``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgesight"


def cache_key(fingerprint: str, spec: PreprocessSpec) -> str:
    payload = json.dumps({"format": CACHE_FORMAT, "fingerprint": fingerprint, "preprocess": asdict(spec)})
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def prepared(
    dataset: Dataset,
    spec: PreprocessSpec,
    cache_dir: Path | None = None,
    progress: Callable[[int], object] | None = None,
) -> PreparedImages:
    """The dataset's images prepared with ``spec``: from the cache, or decoded now and cached.

    ``progress`` is called with the number of images decoded so far (only when building).
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = root / cache_key(dataset.fingerprint, spec)
    if not (entry / META_FILE).is_file():
        _build(dataset, spec, entry, progress)
        from_cache = False
    else:
        log.info("preprocessed images from the cache %s", entry)
        from_cache = True
    meta = json.loads((entry / META_FILE).read_text())
    pixels = np.load(entry / PIXELS_FILE, mmap_mode="r")
    unreadable = tuple(meta["unreadable"])
    bad = set(unreadable)
    readable = np.asarray([e.relpath not in bad for e in dataset.examples], dtype=bool)
    return PreparedImages(pixels, readable, unreadable, entry, from_cache)


def _build(dataset: Dataset, spec: PreprocessSpec, entry: Path, progress: Callable[[int], object] | None) -> None:
    """Decode and prepare every image into a staging folder, then move it into place atomically."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        shape = (len(dataset.examples), spec.height, spec.width, spec.channels)
        pixels = np.lib.format.open_memmap(staging / PIXELS_FILE, mode="w+", dtype=np.uint8, shape=shape)
        unreadable = read_examples(dataset.examples, spec, out=pixels, progress=progress).unreadable
        pixels.flush()
        del pixels
        meta = {
            "format": CACHE_FORMAT,
            "fingerprint": dataset.fingerprint,
            "preprocess": asdict(spec),
            "relpaths": [e.relpath for e in dataset.examples],
            "unreadable": unreadable,
        }
        (staging / META_FILE).write_text(json.dumps(meta) + "\n")
        try:
            staging.replace(entry)
        except OSError:
            if not (entry / META_FILE).is_file():  # not another process that finished first
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
