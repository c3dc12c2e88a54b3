"""The inbox keeps image + sidecar pairs under a cap that holds exactly, and cleans up after a crash."""

import hashlib
import json

import numpy as np
import pytest

from edge.collect.inbox import Inbox, item_id
from edge.collect.sample import Sample


def jpeg_like(size: int, seed: int) -> bytes:
    """Bytes standing in for a JPEG: the inbox stores bytes and does not decode them."""
    return b"\xff\xd8\xff" + np.random.default_rng(seed).bytes(size - 3)


def sample(seconds: float, **fields) -> Sample:
    return Sample(captured=1764061200.0 + seconds, reason="interval", **fields)


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_a_pair_is_an_image_and_its_sidecar_named_by_time_and_content(tmp_path):
    inbox = Inbox(tmp_path, 10_000_000)
    data = jpeg_like(5000, 0)
    item = inbox.put(data, sample(1.5, source="camera 0", roi=(1, 2, 3, 4), suggestion=(("open", 0.4),)))
    sha = hashlib.sha256(data).hexdigest()
    assert item.id == f"1764061201500-{sha[:12]}" == item_id(item.sample)
    assert (tmp_path / f"{item.id}.jpg").read_bytes() == data
    sidecar = json.loads((tmp_path / f"{item.id}.json").read_text())
    assert sidecar["sha256"] == sha and sidecar["bytes"] == 5000 and sidecar["roi"] == [1, 2, 3, 4]
    assert sidecar["suggestion"] == [["open", 0.4]] and item.sample.score == 0.4
    assert inbox.read(item.id) == data and inbox.used_bytes == folder_bytes(tmp_path) == item.size
    assert inbox.put(data, sample(1.5)) == item and len(inbox) == 1  # the same capture is stored once


def test_the_cap_holds_exactly_and_only_the_oldest_pairs_needed_go(tmp_path):
    cap = 200_000
    inbox = Inbox(tmp_path, cap)
    sizes = np.random.default_rng(1).integers(5_000, 40_000, 60)
    for n, size in enumerate(sizes):
        before = {i.id: i.size for i in inbox.items()}
        inbox.put(jpeg_like(int(size), n), sample(n))
        on_disk = folder_bytes(tmp_path)
        assert on_disk <= cap and inbox.used_bytes == on_disk
        kept = [i.id for i in inbox.items()]
        gone = [key for key in before if key not in kept]
        assert gone == list(before)[: len(gone)]  # the oldest first
        if gone:  # keeping the last one evicted would not have left room
            assert on_disk + before[gone[-1]] > cap
    assert inbox.evicted > 20
    assert {p.stem for p in tmp_path.glob("*.json")} == {p.stem for p in tmp_path.glob("*.jpg")} == set(kept)


def test_a_pair_larger_than_the_whole_cap_is_refused_and_counted(tmp_path):
    inbox = Inbox(tmp_path, 10_000)
    assert inbox.put(jpeg_like(20_000, 0), sample(0)) is None
    assert inbox.refused == 1 and list(tmp_path.iterdir()) == []


def test_opening_removes_what_an_interruption_left_and_keeps_whole_pairs(tmp_path):
    inbox = Inbox(tmp_path, 1_000_000)
    whole = inbox.put(jpeg_like(3000, 0), sample(0))
    lonely_image = inbox.put(jpeg_like(3000, 1), sample(1))
    lonely_sidecar = inbox.put(jpeg_like(3000, 2), sample(2))
    cut_short = inbox.put(jpeg_like(3000, 3), sample(3))
    (tmp_path / f"{lonely_image.id}.json").unlink()  # killed between the two renames
    (tmp_path / f"{lonely_sidecar.id}.jpg").unlink()  # a power cut that kept only the second rename
    with (tmp_path / f"{cut_short.id}.jpg").open("r+b") as f:
        f.truncate(1000)  # the sidecar says 3000 bytes
    (tmp_path / f".{whole.id}.jpg.tmp").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("a file of the user's")
    again = Inbox(tmp_path, 1_000_000)
    assert [i.id for i in again.items()] == [whole.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{whole.id}.jpg", f"{whole.id}.json", "notes.txt"])
    assert again.used_bytes == whole.size


def test_a_lower_cap_on_the_next_start_evicts_the_oldest(tmp_path):
    inbox = Inbox(tmp_path, 1_000_000)
    items = [inbox.put(jpeg_like(10_000, n), sample(n)) for n in range(10)]
    smaller = Inbox(tmp_path, 35_000)
    assert [i.id for i in smaller.items()] == [i.id for i in items[-3:]]
    assert folder_bytes(tmp_path) <= 35_000


def test_a_write_that_fails_leaves_nothing_behind(tmp_path):
    inbox = Inbox(tmp_path, 1_000_000)
    data = jpeg_like(3000, 0)
    blocked = item_id(sample(0, sha256=hashlib.sha256(data).hexdigest()))
    (tmp_path / f"{blocked}.json").mkdir()  # the sidecar's rename fails
    with pytest.raises(OSError):
        inbox.put(data, sample(0))
    assert [p.name for p in tmp_path.iterdir()] == [f"{blocked}.json"] and len(inbox) == 0 and inbox.used_bytes == 0
