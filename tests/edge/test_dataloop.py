"""The data loop keeps frames worth relabelling, in a folder capped by size, oldest removed first."""

import json

import numpy as np

from edge.config import DataLoopConfig
from edge.dataloop import DataLoop
from edge.result import Result


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (160, 160, 3), dtype=np.uint8)  # ~40 KiB as JPEG


def record(frame: int, label: str = "cat", score: float = 0.3, changed: bool = False) -> Result:
    return Result(
        1764061200.0 + frame, frame, label, score, ((label, score),), latency_ms=1.0, frame_age_ms=2.0,
        state=label if changed else None, state_changed=changed,
    )  # fmt: skip


def test_low_confidence_frames_are_saved_with_their_result(tmp_path):
    loop = DataLoop(DataLoopConfig(dir=str(tmp_path / "loop"), below=0.5, min_interval_s=0))
    assert loop.offer(noise(0), record(0, score=0.3))
    assert not loop.offer(noise(1), record(1, score=0.9))  # confident, no change
    assert loop.offer(noise(2), record(2, "dog", 0.9, changed=True))  # the state changed
    names = sorted(p.name for p in (tmp_path / "loop").iterdir())
    assert names == [
        "1764061200.000_00000000_low_cat.jpg",
        "1764061200.000_00000000_low_cat.json",
        "1764061202.000_00000002_changed_dog.jpg",
        "1764061202.000_00000002_changed_dog.json",
    ]
    assert json.loads((tmp_path / "loop" / names[1]).read_text())["score"] == 0.3
    assert loop.saved == 2


def test_folder_stays_under_its_cap_removing_the_oldest_first(tmp_path):
    loop = DataLoop(DataLoopConfig(dir=str(tmp_path), max_mb=0.2, min_interval_s=0))
    for frame in range(20):
        assert loop.offer(noise(frame), record(frame))
    files = sorted(tmp_path.iterdir())
    assert sum(p.stat().st_size for p in files) <= 0.2 * 1024 * 1024
    assert loop.removed > 0 and len(files) + loop.removed == 40
    kept = sorted({int(p.name.split("_")[1]) for p in files})
    assert kept == list(range(20 - len(kept), 20))  # the newest frames survive
    # A restarted daemon counts what is already there against the cap.
    again = DataLoop(DataLoopConfig(dir=str(tmp_path), max_mb=0.2, min_interval_s=0))
    again.offer(noise(99), record(99))
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 0.2 * 1024 * 1024


def test_rate_limit_between_saved_frames(tmp_path):
    loop = DataLoop(DataLoopConfig(dir=str(tmp_path), min_interval_s=3600))
    assert loop.offer(noise(0), record(0))
    assert not loop.offer(noise(1), record(1))
    assert loop.saved == 1
