"""The daemon: load and check the model, capture in its own thread, classify the freshest frame,
smooth, publish results until the source ends or the stop event is set (SIGINT/SIGTERM).

Results go to the configured outputs (JSON lines, MQTT, HTTP) and to ``emit`` when given. systemd
hears READY=1 once the model passed its golden check and the first frame is classified, WATCHDOG=1
only while frames are classified, and STATUS= lines. The ``reload`` event (SIGHUP) re-reads the
config and swaps the model only after the new bundle passed every check in a child process.
"""

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.capture import Backoff, Capture, Frame, Source, SourceEndedError, open_source
from edge.classifier import Classifier, load_classifier
from edge.config import Config, SourceConfig, load_config
from edge.dataloop import DataLoop
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.postprocess import Classification
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
    """What a config makes live; a reload replaces the parts whose settings changed."""

    config: Config
    classifier: Classifier
    model: ModelInfo
    results: ResultFilter
    dataloop: DataLoop | None
    capture: Capture

    def report_to(self, state: LiveState) -> None:
        """Tell the live state what is live now."""
        state.set_model(self.model)
        state.set_dataloop(self.dataloop)


def load_model(config: Config) -> tuple[Classifier, ModelInfo]:
    """Load the model and re-run its golden samples."""
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


def start(config: Config, state: LiveState) -> Live:
    classifier, model = load_model(config)
    source = _open(config.source, classifier)
    live = Live(
        config,
        classifier,
        model,
        ResultFilter(config.results, classifier.manifest.labels),
        DataLoop(config.dataloop) if config.dataloop.dir else None,
        _capture(source, config.source, state),
    )
    live.report_to(state)
    return live


def _capture(source: Source, config: SourceConfig, state: LiveState) -> Capture:
    """``source`` read by its own thread from now on."""
    return Capture(source, state, Backoff(config.reconnect_min_s, config.reconnect_max_s))


def _model_size(classifier: Classifier) -> tuple[int, int]:
    spec = classifier.manifest.preprocess
    return spec.width, spec.height


def _open(config: SourceConfig, classifier: Classifier) -> Source:
    """The source, told the model's size and whether its contract averages pixels to shrink a frame."""
    averaging = classifier.manifest.preprocess.interpolation == "area"
    return open_source(config, _model_size(classifier), averaging=averaging)


def reload_live(live: Live, config_path: Path, state: LiveState) -> Live:
    """The config and model read again; the new bundle is checked in a child first, so a corrupt
    flatbuffer can only crash the child. Raises ``EdgesightError`` and leaves ``live`` untouched on failure."""
    config = load_config(config_path)
    if Path(config.model.path).is_dir():
        verify_in_child(Path(config.model.path).resolve())  # named by its version, not by `current`
    classifier, model = load_model(config)
    new = replace(live, config=config, classifier=classifier, model=model)
    if config.results != live.config.results or classifier.manifest.labels != live.classifier.manifest.labels:
        new.results = ResultFilter(config.results, classifier.manifest.labels)
    if config.dataloop != live.config.dataloop:
        new.dataloop = DataLoop(config.dataloop) if config.dataloop.dir else None
    if config.source != live.config.source or _model_size(classifier) != _model_size(live.classifier):
        source = _open(config.source, classifier)  # a bad source fails before the old one stops
        live.capture.close()
        new.capture = _capture(source, config.source, state)
    for section in ("output", "mqtt", "http"):
        if getattr(config, section) != getattr(live.config, section):
            log.warning("[%s] changed: it takes effect when the service restarts", section)
    new.report_to(state)
    return new


def run(
    config: Config,
    stop: threading.Event,
    emit: Callable[[Result], None] | None = None,
    state: LiveState | None = None,
    *,
    notifier: Notifier | None = None,
    reload: threading.Event | None = None,
    config_path: Path | None = None,
) -> Snapshot:
    """Classify the configured source's frames; return the final state."""
    state = state or LiveState(config.mqtt.resolved_device_id() if config.mqtt else default_device_id())
    notifier = notifier or Notifier({})
    notifier.status("loading the model")
    live = start(config, state)
    lock = threading.Lock()  # the interpreter serves the loop and POST /api/classify, one call at a time

    def classify(image: np.ndarray) -> Classification:
        with lock:
            return live.classifier.classify(image).thresholded(live.config.results.threshold)

    try:
        outputs = Outputs(
            state,
            output=config.output if config.output.jsonl else None,
            mqtt=config.mqtt,
            http=config.http,
            classify=classify,
        )
    except BaseException:  # a port in use, a missing secret: stop the capture before the error goes up
        live.capture.close()
        raise
    notifier.status(f"waiting for the first frame from {live.capture.source.description}")
    ready = False
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
            if reload is not None and reload.is_set():
                reload.clear()
                live = _reload(live, config_path or Path(), state, notifier, lock)
            try:
                frame = live.capture.take(TAKE_TIMEOUT_S)
            except SourceEndedError:
                break
            if frame is None:
                continue
            started = time.monotonic()
            with lock:
                image, result = _classify(live, frame)
            outputs.submit(result)
            state.on_result(result, image)
            if emit is not None:
                emit(result)
            if live.dataloop is not None:
                live.dataloop.offer(image, result)
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
            interval = 1.0 / live.config.source.max_fps if live.config.source.max_fps else 0.0
            if interval and stop.wait(max(0.0, started + interval - time.monotonic())):
                break
    finally:
        notifier.stopping()
        live.capture.close()
        outputs.close()
    final = state.snapshot()
    log.info("%s", final.summary())
    return final


def _classify(live: Live, frame: Frame) -> tuple[np.ndarray, Result]:
    """One frame's result, thresholded and smoothed, and the image it was computed on."""
    config = live.config.results
    image = crop(frame.image, live.config.source.roi)
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
    return image, result


def _reload(live: Live, config_path: Path, state: LiveState, notifier: Notifier, lock: threading.Lock) -> Live:
    """Apply a reload request; on any failure the old model keeps running and the failure is reported."""
    notifier.reloading(time.monotonic_ns() // 1000)
    log.info("reload requested: reading %s", config_path)
    try:
        with lock:
            new = reload_live(live, config_path, state)
    except EdgesightError as e:
        log.error("reload refused, %s keeps running: %s", live.classifier.name, e)
        state.on_reload(False, str(e))
        notifier.ready(f"reload refused ({e}); {state.snapshot().status_line()}")
        return live
    log.info("reloaded: %s is live", new.classifier.name)
    state.on_reload(True, f"{new.classifier.name} is live")
    notifier.ready(state.snapshot().status_line())
    return new


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
