"""The daemon: load and check the model, capture in its own thread, classify the freshest frame,
smooth, publish results until the source ends or the stop event is set (SIGINT/SIGTERM).

Results go to the configured outputs (JSON lines, MQTT, HTTP) and to ``emit`` when given. systemd
hears READY=1 once the model passed its golden check and the first frame is classified, WATCHDOG=1
only while frames are classified, and STATUS= lines. The ``reload`` event (SIGHUP) re-reads the
config and prepares the new model (checked in a child process) and source in a thread of its own while
the old model goes on classifying; they are swapped in only once all of it succeeded.

Without a model (none configured, none deployed yet, or `edgesight collect`) the daemon collects:
every frame is offered to the teach loop's collector (``edge.collect``) instead of being classified,
and READY and the watchdog follow the frames taken.
"""

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.capture import Backoff, Capture, Frame, Source, SourceEndedError, first_frame, is_camera, open_source
from edge.classifier import Classifier, load_classifier
from edge.collect.burst import LiveFrame
from edge.collect.collector import Origin, Suggestion
from edge.collect.daemon import (
    COLLECT_MAX_FPS,
    COLLECT_SIZE,
    Teach,
    make_collector,
    model_wanted,
    open_teach,
    scene_collecting,
    store_settings,
)
from edge.config import CollectConfig, Config, SourceConfig, load_config
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.postprocess import Classification
from edge.preprocess import halving_ahead
from edge.publish.outputs import Outputs
from edge.publish.settings import default_device_id
from edge.result import Result, Smoothed
from edge.smoothing import ResultFilter
from edge.state import LiveState, ModelInfo, Snapshot
from edge.systemd import Notifier
from edge.verify import verify_in_child

log = logging.getLogger(__name__)

TAKE_TIMEOUT_S = 0.5  # how often the loop wakes without frames, to notice stop and reload requests
HEALTH_LOG_INTERVAL_S = 60.0  # a line of counters in the log, so a journal shows how the daemon fares
STATUS_INTERVAL_S = 5.0  # how often systemd's STATUS= line is refreshed


@dataclass
class Live:
    """What a config makes live; a reload replaces the parts whose settings changed. Without a model
    (``classifier`` None) the daemon only collects."""

    config: Config
    classifier: Classifier | None
    model: ModelInfo | None
    results: ResultFilter | None
    capture: Capture
    origin: Origin
    collect: bool  # `edgesight collect`: the model is optional and frames are always collected
    teach: Teach | None

    @property
    def name(self) -> str:
        return self.classifier.name if self.classifier else "collecting without a model"

    @property
    def scene(self) -> bool:
        return scene_collecting(self.config, self.collect, self.classifier is not None)

    def report_to(self, state: LiveState) -> None:
        """Tell the live state what is live now."""
        state.set_model(self.model)
        collector = self.teach.collector if self.teach else None
        state.set_collector(collector, self.scene and collector is not None)


def load_model(config: Config) -> tuple[Classifier, ModelInfo]:
    """Load the model and re-run its golden samples."""
    assert config.model is not None, "model_wanted() says whether there is one"
    classifier = load_classifier(config.model)
    checked = classifier.golden_check()
    describe = classifier.describe()
    manifest = classifier.manifest
    model = ModelInfo(
        manifest.name,
        manifest.version,
        sha256=manifest.model_sha256,
        runtime=str(describe["runtime"]),
        labels=manifest.labels,
        golden_checked=checked,
        fast_preprocessing=bool(describe["fast_preprocessing"]),
    )
    log.info("model %s ready (%d golden samples agree)", classifier.name, checked)
    return classifier, model


def start(config: Config, state: LiveState, collect: bool = False) -> Live:
    classifier, model = None, None
    if model_wanted(config, collect):
        try:
            classifier, model = load_model(config)
        except EdgesightError as e:
            if not collect:
                raise
            log.warning("%s; collecting without the model's suggestions", e)
    scene = scene_collecting(config, collect, classifier is not None)
    needed = scene or (classifier is not None and config.dataloop is not None)
    teach = open_teach(config, needed) if needed or config.http is not None else None  # /label needs it too
    feed = _feed(config, classifier, collect)
    source = _open(feed)
    origin = Origin(source.description, config.source.roi, state.device_id)
    make_collector(teach, config, origin, scene=scene, with_model=classifier is not None)
    live = Live(
        config,
        classifier,
        model,
        ResultFilter(config.results, classifier.manifest.labels) if classifier else None,
        _capture(source, feed, state),
        origin,
        collect,
        teach,
    )
    live.report_to(state)
    return live


def _model_size(classifier: Classifier | None) -> tuple[int, int]:
    if classifier is None:
        return COLLECT_SIZE
    spec = classifier.manifest.preprocess
    return spec.width, spec.height


@dataclass(frozen=True)
class Feed:
    """How the source is opened and what the capture thread does to each frame; a reload that changes it
    opens the source afresh."""

    source: SourceConfig
    model_size: tuple[int, int]
    averaging: bool  # the contract averages pixels when it shrinks a frame (area): MJPEG may decode smaller
    halve_to: tuple[int, int] | None  # the contract's exact 2x2 halvings, done in the capture thread


def _feed(config: Config, classifier: Classifier | None, collect: bool) -> Feed:
    """Frames kept for a dataset (collecting, a data loop) stay at the source's size: a later model may
    want more pixels than this one. Otherwise, with ``shrink_at_source`` and no roi (its coordinates are the
    whole frame's), frames are made smaller as early as the model's contract allows."""
    with_model = classifier is not None
    keeps = scene_collecting(config, collect, with_model) or (with_model and config.dataloop is not None)
    source = replace(config.source, shrink_at_source=False) if keeps else config.source
    spec = classifier.manifest.preprocess if classifier else None
    averaging = spec is not None and spec.interpolation == "area"
    early = spec is not None and source.shrink_at_source and not source.roi
    return Feed(source, _model_size(classifier), averaging, halving_ahead(spec) if spec and early else None)


def _open(feed: Feed) -> Source:
    return open_source(feed.source, feed.model_size, averaging=feed.averaging)


def _capture(source: Source, feed: Feed, state: LiveState) -> Capture:
    """``source`` read by its own thread from now on."""
    backoff = Backoff(feed.source.reconnect_min_s, feed.source.reconnect_max_s)
    return Capture(source, state, backoff, feed.halve_to)


@dataclass(frozen=True)
class Prepared:
    """A reload made ready beside the loop: everything slow is done, so swapping it in is quick."""

    config: Config
    classifier: Classifier | None  # None: collecting without a model
    model: ModelInfo | None
    source: Source | None  # a new source to read, shown to answer; None: the live capture stays
    feed: Feed


def prepare_reload(live: Live, config_path: Path) -> Prepared:
    """Read the config again, check the new bundle in a child (a corrupt flatbuffer can only crash the
    child), load it and run its golden samples, and open a changed source and read a frame from it.

    Runs in its own thread while the old model goes on classifying; raises ``EdgesightError`` when the
    reload must be refused, and then nothing live has been touched.
    """
    config = load_config(config_path)
    classifier, model = None, None
    if model_wanted(config, live.collect):
        assert config.model is not None
        if Path(config.model.path).is_dir():
            verify_in_child(Path(config.model.path).resolve())  # named by its version, not by `current`
        classifier, model = load_model(config)
    source = None
    feed = _feed(config, classifier, live.collect)
    if feed != _feed(live.config, live.classifier, live.collect):
        source = _open(feed)  # a missing file fails here
        # The same camera cannot be opened a second time while it is read: it is reopened with the new settings.
        if not (config.source.uri == live.config.source.uri and is_camera(config.source.uri)):
            # A stream or camera that does not answer within timeout_s is refused. A second source object,
            # so the one that goes live starts afresh (an image folder at its first image).
            first_frame(_open(feed))
    return Prepared(config, classifier, model, source, feed)


def apply_reload(live: Live, prepared: Prepared, state: LiveState) -> Live:
    """What ``prepare_reload`` made ready, made live; the caller swaps it in under the interpreter lock."""
    config, classifier = prepared.config, prepared.classifier
    new = replace(live, config=config, classifier=classifier, model=prepared.model)
    if classifier is None:
        new.results = None
    elif (
        live.results is None
        or config.results != live.config.results
        or live.results.labels != classifier.manifest.labels
    ):
        new.results = ResultFilter(config.results, classifier.manifest.labels)
    if prepared.source is not None:
        live.capture.close()
        new.capture = _capture(prepared.source, prepared.feed, state)
        new.origin = Origin(prepared.source.description, config.source.roi, state.device_id)
    teach = (config.collect, config.dataloop, new.origin, classifier is None)
    if teach != (live.config.collect, live.config.dataloop, live.origin, live.classifier is None):
        make_collector(new.teach, config, new.origin, scene=new.scene, with_model=classifier is not None)
    for section in ("output", "mqtt", "http"):
        if getattr(config, section) != getattr(live.config, section):
            log.warning("[%s] changed: it takes effect when the service restarts", section)
    if store_settings(config) != store_settings(live.config):
        log.warning("[collect] state_dir or max_mb changed: it takes effect when the service restarts")
    new.report_to(state)
    return new


class PendingReload:
    """``prepare_reload`` in its own thread; ``done`` is set when ``outcome`` holds what it made or raised."""

    def __init__(self, live: Live, config_path: Path) -> None:
        self.outcome: Prepared | Exception | None = None
        self.done = threading.Event()
        threading.Thread(target=self._prepare, args=(live, config_path), name="reload", daemon=True).start()

    def _prepare(self, live: Live, config_path: Path) -> None:
        try:
            self.outcome = prepare_reload(live, config_path)
        except Exception as e:  # reported by the loop; the old model keeps running whatever went wrong
            self.outcome = e
        finally:
            self.done.set()


def run(
    config: Config,
    stop: threading.Event,
    emit: Callable[[Result], None] | None = None,
    state: LiveState | None = None,
    *,
    notifier: Notifier | None = None,
    reload: threading.Event | None = None,
    config_path: Path | None = None,
    collect: bool = False,
) -> Snapshot:
    """Classify the configured source's frames (``collect``: collect them for labelling, with the model's
    suggestions when one is deployed); return the final state."""
    state = state or LiveState(config.mqtt.resolved_device_id() if config.mqtt else default_device_id())
    notifier = notifier or Notifier({})
    notifier.status("loading the model")
    live = start(config, state, collect)
    lock = threading.Lock()  # the interpreter serves the loop and POST /api/classify, one call at a time

    def classify(image: np.ndarray) -> Classification:
        with lock:
            if live.classifier is None:
                raise EdgesightError("no model loaded to classify with")
            return live.classifier.classify(image).thresholded(live.config.results.threshold)

    try:
        outputs = Outputs(
            state,
            output=config.output if config.output.jsonl else None,
            mqtt=config.mqtt,
            http=config.http,
            classify=classify,
            dataset=live.teach.api((config.collect or CollectConfig()).jpeg_quality) if live.teach else None,
        )
    except BaseException:  # a port in use, a missing secret: stop the capture before the error goes up
        live.capture.close()
        raise
    notifier.status(f"waiting for the first frame from {live.capture.source.description}")
    ready = False
    pending: PendingReload | None = None
    next_report = time.monotonic() + HEALTH_LOG_INTERVAL_S
    next_status = next_watchdog = 0.0
    watchdog_period = (notifier.watchdog_seconds or 0) / 3
    outputs.start()
    # Everything start-up made (modules, the model, the outputs) lives as long as the daemon: out of the
    # collector's sight, so its full collections scan what frames leave behind, not every module again.
    gc.freeze()
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_report:
                log.info("%s", state.snapshot().summary())
                next_report = now + HEALTH_LOG_INTERVAL_S
            if pending is None and reload is not None and reload.is_set():
                reload.clear()
                notifier.reloading(time.monotonic_ns() // 1000)
                log.info("reload requested: reading %s", config_path)
                pending = PendingReload(live, config_path or Path())
            if pending is not None and pending.done.is_set():
                new = _finish_reload(live, pending.outcome, state, notifier)
                with lock:  # POST /api/classify reads `live` under the lock
                    live = new
                pending = None
            try:
                frame = live.capture.take(TAKE_TIMEOUT_S)
            except SourceEndedError:
                break
            if frame is None:
                continue
            started = time.monotonic()
            image = crop(frame.image, live.config.source.roi)
            suggestion = None
            if live.classifier is not None:
                with lock:
                    result = _classify(live, frame, image)
                outputs.submit(result)
                state.on_result(result, image)
                if emit is not None:
                    emit(result)
                suggestion = Suggestion(result.topk, live.model.title if live.model else "", result.state_changed)
            else:
                state.on_frame(image)
            _teach(live, frame, image, suggestion)
            now = time.monotonic()
            if not ready:
                ready = True
                notifier.ready(state.snapshot().status_line())
                next_status = now + STATUS_INTERVAL_S
            elif now >= next_status:
                notifier.status(state.snapshot().status_line())
                next_status = now + STATUS_INTERVAL_S
            if now >= next_watchdog:  # fed only here: a hung camera or runtime starves it
                notifier.watchdog()
                next_watchdog = now + watchdog_period
            max_fps = live.config.source.max_fps or (COLLECT_MAX_FPS if live.classifier is None else 0.0)
            interval = 1.0 / max_fps if max_fps else 0.0
            if interval and stop.wait(max(0.0, started + interval - time.monotonic())):
                break
    finally:
        notifier.stopping()
        live.capture.close()
        outputs.close()
    final = state.snapshot()
    log.info("%s", final.summary())
    return final


def _classify(live: Live, frame: Frame, image: np.ndarray) -> Result:
    """The result for ``image`` (the frame cropped to the roi), thresholded and smoothed."""
    config = live.config.results
    assert live.classifier is not None and live.results is not None
    classification = live.classifier.classify(image)
    decision = live.results.update(classification.probabilities)
    answer = classification.thresholded(config.threshold)
    result = Result(
        ts=frame.ts,
        frame=frame.index,
        path=frame.path,
        label=answer.label,
        score=answer.score,
        topk=answer.topk,
        latency_ms=answer.latency_ms,
        frame_age_ms=(time.monotonic() - frame.captured) * 1000,
        state=decision.state,
        state_changed=decision.changed,
        smoothed=Smoothed(decision.label, decision.score) if config.smoothing != "none" else None,
    )
    return result


def _teach(live: Live, frame: Frame, image: np.ndarray, suggestion: Suggestion | None) -> None:
    """The frame for bursts and "capture now", and offered to the collector."""
    if live.teach is None:
        return
    live.teach.frames.publish(LiveFrame(image, frame.ts, frame.index, live.origin, suggestion))
    if live.teach.collector is not None:
        live.teach.collector.offer(image, frame.ts, frame.index, suggestion)


def _finish_reload(live: Live, outcome: Prepared | Exception | None, state: LiveState, notifier: Notifier) -> Live:
    """Swap in a prepared reload; on any failure the old model keeps running and the refusal is reported."""
    if isinstance(outcome, Prepared):
        new = apply_reload(live, outcome, state)
        log.info("reloaded: %s is live", new.name)
        state.on_reload(True, f"{new.name} is live")
        notifier.ready(state.snapshot().status_line())
        return new
    if isinstance(outcome, EdgesightError):
        log.error("reload refused, %s keeps running: %s", live.name, outcome)
    else:
        log.error("reload failed, %s keeps running; please report it", live.name, exc_info=outcome)
    state.on_reload(False, str(outcome))
    notifier.ready(f"reload refused ({outcome}); {state.snapshot().status_line()}")
    return live


def crop(image: np.ndarray, roi: tuple[int, ...]) -> np.ndarray:
    """The region of interest (x, y, width, height) as a view; it must lie inside the frame."""
    if not roi:
        return image
    x, y, width, height = roi
    if x + width > image.shape[1] or y + height > image.shape[0]:
        raise EdgesightError(
            f"[source] roi {list(roi)} reaches outside the {image.shape[1]}x{image.shape[0]} frame; make it smaller",
            EXIT_CONFIG,
        )
    return image[y : y + height, x : x + width]
