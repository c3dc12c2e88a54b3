"""The data loop: keep the frames worth relabelling (low confidence, or a change of state) with their
result JSON, in a folder capped by size where the oldest go first, for the next round of training."""

import logging
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from edge.config import DataLoopConfig
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.result import Result

log = logging.getLogger(__name__)

JPEG_QUALITY = 92


class DataLoop:
    def __init__(self, config: DataLoopConfig) -> None:
        self.config = config
        self.dir = Path(config.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EdgesightError(f"[dataloop] dir {self.dir}: cannot be created ({e.strerror})", EXIT_CONFIG) from e
        self.limit = int(config.max_mb * 1024 * 1024)
        self.saved = self.removed = self.failed = 0
        self._last_saved = -float("inf")
        # Oldest first: names start with the capture time, so sorting by name sorts by age.
        self._files: deque[tuple[Path, int]] = deque(
            (p, p.stat().st_size) for p in sorted(self.dir.iterdir()) if p.is_file() and p.suffix in (".jpg", ".json")
        )
        self._bytes = sum(size for _, size in self._files)

    def offer(self, image: np.ndarray, result: Result) -> bool:
        """Save the frame if it is worth it and the rate allows; True when saved."""
        changed = result.state_changed
        worth = result.score < self.config.below or (changed and self.config.on_change)
        now = time.monotonic()
        if not worth or now - self._last_saved < self.config.min_interval_s:
            return False
        reason = "changed" if changed and self.config.on_change else "low"
        stem = f"{result.ts:.3f}_{result.frame:08d}_{reason}_{_safe(result.label)}"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        try:
            if not ok:
                raise OSError("JPEG encoding failed")
            self._write(self.dir / f"{stem}.jpg", encoded.tobytes())
            self._write(self.dir / f"{stem}.json", result.encoded + b"\n")
        except OSError as e:
            self.failed += 1
            log.warning("data loop: %s not saved (%s); %d failures so far", stem, e, self.failed)
            return False
        self._last_saved = now
        self.saved += 1
        self._evict()
        return True

    def _write(self, path: Path, data: bytes) -> None:
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(data)
        partial.replace(path)
        self._files.append((path, len(data)))
        self._bytes += len(data)

    def _evict(self) -> None:
        while self._bytes > self.limit and self._files:
            path, size = self._files.popleft()
            path.unlink(missing_ok=True)
            self._bytes -= size
            self.removed += 1


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)[:40]
