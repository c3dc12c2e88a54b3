"""The daemon loop in-process, with the session's trained digits bundle and real sources."""

import json
import shutil
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edge.config import CollectConfig, Config, DataLoopConfig, ModelConfig, ResultsConfig, SourceConfig, load_config
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.settings import HttpSettings
from edge.result import Result
from edge.service import run
from edge.state import LiveState
from tests.helpers import CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH, bundle_copy, digit_jpegs, free_port, switch, wait_for

pytestmark = pytest.mark.slow

RESULT_KEYS = {"ts", "frame", "label", "score", "topk", "latency_ms", "frame_age_ms", "state", "state_changed"}


class Daemon:
    """``edge.service.run`` in a thread, collecting the JSON of what it emits."""

    def __init__(self, config: Config, emit_delay: float = 0.0) -> None:
        self.config, self.results, self.state = config, [], LiveState()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.final = None
        self._emit_delay = threading.Event()
        self._delay = emit_delay
        self.thread = threading.Thread(target=self._run, name="daemon-under-test")
        self.thread.start()

    def _emit(self, result: Result) -> None:
        self.results.append(result.to_json())
        if self._delay:
            self._emit_delay.wait(self._delay)  # stands in for inference slower than the source

    def _run(self) -> None:
        try:
            self.final = run(self.config, self.stop, self._emit, self.state)
        except BaseException as e:
            self.error = e

    def finish(self, timeout: float = 60) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def config(uri: str, bundle, **source) -> Config:
    return Config(source=SourceConfig(uri=uri, **source), model=ModelConfig(path=str(bundle)))


def test_video_file_every_frame_classified_with_its_age(digits_bundle, camera_clip):
    daemon = Daemon(config(str(camera_clip), digits_bundle))
    daemon.thread.join(120)
    daemon.finish()
    assert [r["frame"] for r in daemon.results] == list(range(CLIP_FRAMES))
    assert set(daemon.results[0]) == RESULT_KEYS
    assert all(r["frame_age_ms"] >= r["latency_ms"] for r in daemon.results)  # both rounded alike
    final = daemon.final
    assert (final.frames_captured, final.frames_classified, final.frames_dropped) == (CLIP_FRAMES, CLIP_FRAMES, 0)
    assert final.source_state == "ended" and final.model.golden_checked >= 1
    assert final.result.frame == CLIP_FRAMES - 1 and final.model.fast_preprocessing is True


def test_mjpeg_stream_dies_and_the_daemon_classifies_again(digits_bundle, digits_dir, mjpeg_server):
    server = mjpeg_server(digit_jpegs(digits_dir, "7"), fps=20)
    daemon = Daemon(config(server.url, digits_bundle, timeout_s=2, reconnect_min_s=0.05, reconnect_max_s=0.5))
    try:
        wait_for(lambda: len(daemon.results) >= 5, what="results from the stream")
        server.stop()
        wait_for(lambda: daemon.state.snapshot().source_state == "reconnecting", what="the loss to be noticed")
        before = len(daemon.results)
        server.start()
        wait_for(lambda: len(daemon.results) >= before + 5, what="results after the restart")
        snapshot = daemon.state.snapshot()
        assert snapshot.reconnects >= 1 and snapshot.source_state == "open"
    finally:
        daemon.finish()
    labels = [r["label"] for r in daemon.results]
    assert labels.count("7") / len(labels) >= 0.9
    after = daemon.results[before:]
    assert after[0]["frame"] > daemon.results[before - 1]["frame"]


def test_slow_inference_drops_stale_frames_and_frame_age_stays_bounded(digits_bundle, camera_clip):
    daemon = Daemon(config(str(camera_clip), digits_bundle, pace=True, loop=True), emit_delay=0.25)
    try:
        wait_for(lambda: len(daemon.results) >= 12, what="a dozen results")
    finally:
        daemon.finish()
    final = daemon.final
    ages = [r["frame_age_ms"] for r in daemon.results]
    # The camera runs at 12.5 fps, inference at ~4: a queue would have aged the last frames by seconds.
    assert final.frames_dropped >= 12
    assert max(ages) < 1000, ages
    assert final.frames_captured <= final.frames_classified + final.frames_dropped + 1


def test_picamera2_through_its_fake_feeds_the_classifier(digits_bundle, fake_picamera2):
    daemon = Daemon(config("picamera2", digits_bundle))
    try:
        wait_for(lambda: len(daemon.results) >= 3, what="results from the fake camera")
    finally:
        daemon.finish()
    camera = fake_picamera2.instances[0]
    assert camera.config["lores"]["size"] == (32, 32)  # the digits model's input size
    assert camera.closed and daemon.final.source == "Pi camera 0 (lores 32x32)"


def test_threshold_smoothing_and_data_loop(digits_bundle, digits_dir, tmp_path):
    cfg = Config(
        source=SourceConfig(uri=str(digits_dir / "3")),
        model=ModelConfig(path=str(digits_bundle)),
        results=ResultsConfig(threshold=0.999, smoothing="majority", window=3, debounce=2),
        collect=CollectConfig(state_dir=str(tmp_path), interval_s=0, on_change=False, max_mb=0.1, duplicate=0),
        dataloop=DataLoopConfig(below=1.0, min_interval_s=0),
    )
    daemon = Daemon(cfg)
    daemon.thread.join(120)
    daemon.finish()
    results = daemon.results
    assert all(r["label"] in ("3", "unknown") for r in results)
    assert all(r["label"] == "unknown" for r in results if r["score"] < 0.999)
    assert all(set(r["smoothed"]) == {"label", "score"} for r in results)
    assert results[0]["state"] is None and results[1]["state"] is not None  # debounce 2
    saved = sorted((tmp_path / "inbox").glob("*.json"))
    assert saved and daemon.final.frames_kept >= len(saved)
    assert sum(p.stat().st_size for p in (tmp_path / "inbox").iterdir()) <= 0.1 * 1024 * 1024
    sidecar = json.loads(saved[0].read_text())
    assert sidecar["reason"] in ("low", "state") and sidecar["suggestion"][0][0] == "3"
    assert {p.stem for p in (tmp_path / "inbox").glob("*.jpg")} == {p.stem for p in saved}  # pairs, whole


def test_results_from_a_glob_source_name_their_image_file(digits_bundle, digits_dir, tmp_path):
    for digit in "508":
        shutil.copy(sorted((digits_dir / digit).iterdir())[0], tmp_path / f"digit-{digit}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    daemon = Daemon(config(str(tmp_path / "digit-*"), digits_bundle))
    daemon.thread.join(60)
    daemon.finish()
    assert [r["path"] for r in daemon.results] == [str(tmp_path / f"digit-{digit}.png") for digit in "058"]
    assert list(daemon.results[0])[:3] == ["ts", "frame", "path"]


def test_post_classify_applies_the_daemons_threshold(digits_bundle, digits_dir):
    image_path = sorted((digits_dir / "6").iterdir())[0]
    port = free_port()
    cfg = Config(
        source=SourceConfig(uri=str(image_path), loop=True, max_fps=20),
        model=ModelConfig(path=str(digits_bundle)),
        results=ResultsConfig(threshold=1.0),  # above any int8 score: every label is "unknown"
        http=HttpSettings(port=port),
    )
    daemon = Daemon(cfg)
    try:
        wait_for(lambda: daemon.results, what="a result")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/classify", data=image_path.read_bytes(), headers={"Content-Type": "image/png"}
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            answer = json.load(response)
    finally:
        daemon.finish()
    assert answer["label"] == daemon.results[0]["label"] == "unknown"
    assert answer["score"] == daemon.results[0]["score"] and answer["topk"] == daemon.results[0]["topk"]


def test_roi_outside_the_frame_is_a_config_error(digits_bundle, camera_clip):
    roi = (CLIP_WIDTH - 68, 0, 100, 100)
    daemon = Daemon(config(str(camera_clip), digits_bundle, roi=roi))
    daemon.thread.join(60)
    outside = rf"roi \[{roi[0]}, 0, 100, 100\] reaches outside the {CLIP_WIDTH}x{CLIP_HEIGHT}"
    with pytest.raises(EdgesightError, match=outside) as error:
        daemon.finish()
    assert error.value.exit_code == EXIT_CONFIG


def test_roi_crops_before_classifying(digits_bundle, digits_dir, tmp_path):
    digit = cv2.imread(str(sorted((digits_dir / "2").iterdir())[0]))
    frame = np.zeros((64, 128, 3), np.uint8)
    frame[16:48, 80:112] = digit  # the digit in the right half, a blank left half
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    daemon = Daemon(config(str(tmp_path / "frame.png"), digits_bundle, roi=(80, 16, 32, 32)))
    daemon.thread.join(60)
    daemon.finish()
    assert daemon.results[0]["label"] == "2"


def test_max_fps_spaces_classifications_at_least_its_interval(digits_bundle, digits_dir):
    emitted = []

    class Timed(Daemon):
        def _emit(self, result: Result) -> None:
            emitted.append(time.monotonic())
            super()._emit(result)

    daemon = Timed(config(str(digits_dir / "1"), digits_bundle, max_fps=20))
    wait_for(lambda: len(emitted) >= 8, what="eight results")
    daemon.finish()
    gaps = np.diff(emitted)
    assert gaps.min() >= 0.045, gaps  # a lower bound: a busy machine only makes the gaps longer


def test_the_old_model_keeps_classifying_while_a_reload_is_prepared(digits_bundle, digits_dir, tmp_path):
    """The new bundle's check in a child, its loading and golden samples take most of a second: the loop goes on
    classifying with the old model meanwhile, and the new one is swapped in only when all of it passed."""
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    bundle_copy(digits_bundle, bundles / "1.0.0", "1.0.0")
    switch(bundles, "1.0.0")
    path = tmp_path / "edgesight.toml"
    path.write_text(
        f'[source]\nuri = "{digits_dir / "4"}"\nloop = true\nmax_fps = 100\n'
        f'[model]\npath = "{bundles / "current"}"\nthreads = 1\n[output]\njsonl = ""\n'
    )
    state, stop, reload, requested = LiveState(), threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[bool, str]] = []  # per result: was the reload requested yet, which model was live

    def emit(_result: Result) -> None:
        seen.append((requested.is_set(), state.snapshot().model.version))

    daemon = threading.Thread(
        target=run, args=(load_config(path), stop, emit, state), kwargs={"reload": reload, "config_path": path}
    )
    daemon.start()
    try:
        wait_for(lambda: len(seen) >= 5, timeout=60, what="results from the old model")
        bundle_copy(digits_bundle, bundles / "2.0.0", "2.0.0")
        switch(bundles, "2.0.0")
        requested.set()
        reload.set()
        wait_for(lambda: seen[-1][1] == "2.0.0", timeout=60, what="the new model")
    finally:
        stop.set()
        daemon.join(60)
    old_while_reloading = sum(1 for asked, version in seen if asked and version == "1.0.0")
    assert old_while_reloading >= 5, old_while_reloading
    assert state.snapshot().reload.ok is True and seen[-1] == (True, "2.0.0")
