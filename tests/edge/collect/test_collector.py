"""The collector keeps a frame per interval and per scene change, skips near-copies, and with a model
takes the data loop's frames (low confidence, a state change) into the same capped inbox."""

import json

import numpy as np

from edge.collect.collector import Collector, Origin, Suggestion
from edge.collect.inbox import Inbox
from edge.collect.scene import difference, thumbnail
from edge.config import CollectConfig, DataLoopConfig
from tests.helpers import garage


class Clock:
    """The collector's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collector(tmp_path, collect=None, dataloop=None, cap=50_000_000):
    clock = Clock()
    inbox = Inbox(tmp_path / "inbox", cap)
    origin = Origin(source="MJPEG http://127.0.0.1/x", roi=(0, 0, 320, 240), device="pi-test")
    scene = collect is not None
    return Collector(inbox, origin, collect or CollectConfig(), dataloop, scene=scene, clock=clock), clock


def test_thumbnails_see_the_door_but_not_the_noise():
    closed = [thumbnail(garage("closed", seed)) for seed in range(3)]
    opened = thumbnail(garage("open", 9))
    assert max(difference(closed[0], other) for other in closed[1:]) < 0.005
    assert difference(closed[0], opened) > 0.1
    big = np.ascontiguousarray(np.repeat(np.repeat(garage("open", 9), 6, axis=0), 6, axis=1))  # 1920x1440
    assert difference(thumbnail(big), opened) < 0.02


def test_a_static_scene_is_kept_once_and_a_new_scene_at_once(tmp_path):
    collect, clock = collector(tmp_path, CollectConfig(interval_s=10, change=0.05, duplicate=0.02, min_interval_s=1))
    kept = []
    for second in range(60):  # a minute of the closed door: six intervals, all the same scene
        clock.now += 1
        kept.append(collect.offer(garage("closed", second), 1764061200.0 + second, second))
    assert [k.sample.reason for k in kept if k] == ["interval"]
    assert collect.counters.duplicates == 5
    clock.now += 0.5
    opened = collect.offer(garage("open", 99), 1764061300.0, 100)
    assert opened.sample.reason == "change"
    clock.now += 0.5
    assert collect.offer(garage("closed", 100), 1764061301.0, 101) is None  # within min_interval_s
    clock.now += 1
    assert collect.offer(garage("closed", 101), 1764061302.0, 102) is None  # a change, but back to a kept scene
    assert collect.counters.duplicates == 6 and collect.counters.kept == {"interval": 1, "change": 1}
    sidecar = json.loads((tmp_path / "inbox" / f"{opened.id}.json").read_text())
    assert sidecar["source"] == "MJPEG http://127.0.0.1/x" and sidecar["roi"] == [0, 0, 320, 240]
    assert sidecar["device"] == "pi-test" and sidecar["frame"] == 100 and sidecar["captured"] == 1764061300.0
    assert sidecar["suggestion"] == [] and sidecar["reason"] == "change"


def test_without_scene_changes_only_the_interval_keeps_frames(tmp_path):
    collect, clock = collector(tmp_path, CollectConfig(interval_s=5, on_change=False, duplicate=0, min_interval_s=0))
    kept = 0
    for n in range(20):
        clock.now += 1
        kept += collect.offer(garage("open" if n % 2 else "closed", n), 1764061200.0 + n, n) is not None
    assert kept == 4  # at 1, 6, 11, 16 s, whatever the scene did


def test_data_loop_frames_carry_the_models_top_k_and_the_cap_holds_with_whole_pairs(tmp_path):
    """Issue 11, item 12: the data loop overshot its cap and left result files whose image was evicted."""
    cap = 150_000
    collect, clock = collector(tmp_path, None, DataLoopConfig(below=0.6, min_interval_s=0), cap=cap)
    folder = tmp_path / "inbox"
    kept = []
    for n in range(80):
        clock.now += 0.1
        rng = np.random.default_rng(n)
        noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)  # incompressible: ~20 kB a frame
        suggestion = Suggestion((("open", 0.4), ("closed", 0.35)), "garage 1.0.0", state_changed=n % 10 == 0)
        if n % 3 == 0:
            suggestion = Suggestion((("open", 0.9), ("closed", 0.1)), "garage 1.0.0", state_changed=n % 10 == 0)
        kept.append(collect.offer(noise, 1764061200.0 + n, n, suggestion))
        files = list(folder.iterdir())
        assert sum(p.stat().st_size for p in files) <= cap
        assert {p.stem for p in files if p.suffix == ".json"} == {p.stem for p in files if p.suffix == ".jpg"}
    reasons = {n: k.sample.reason for n, k in enumerate(kept) if k}
    assert reasons[0] == "state" and reasons[1] == "low" and 3 not in reasons  # 3: confident, no change
    assert collect.inbox.evicted > 0
    newest = max(collect.inbox.items(), key=lambda item: item.id)
    assert newest.sample.suggestion == (("open", 0.4), ("closed", 0.35)) and newest.sample.model == "garage 1.0.0"


def test_without_a_collect_section_the_data_loop_alone_keeps_frames_and_skips_copies(tmp_path):
    collect, clock = collector(tmp_path, None, DataLoopConfig(below=0.5, min_interval_s=10))
    confident = Suggestion((("closed", 0.95),), "garage 1")
    unsure = Suggestion((("closed", 0.3),), "garage 1")
    assert collect.offer(garage("closed", 0), 1.0, 0, confident) is None
    assert collect.offer(garage("closed", 1), 2.0, 1) is None  # no model's view, no data loop
    assert collect.offer(garage("closed", 2), 3.0, 2, unsure).sample.reason == "low"
    clock.now += 5
    assert collect.offer(garage("open", 3), 4.0, 3, unsure) is None  # the data loop's min_interval_s
    clock.now += 10
    assert collect.offer(garage("closed", 4), 5.0, 4, unsure) is None  # a model unsure of a static scene
    assert collect.counters.duplicates == 1 and len(collect.inbox) == 1
