"""The daemon: load and check the model, capture in its own thread, classify the freshest frame,
smooth, publish results until the source ends or the stop event is set (SIGINT/SIGTERM).

Results go to the configured outputs (JSON lines, MQTT, HTTP) and to ``emit`` when given. systemd
hears READY=1 once the model passed its golden check and the first frame is classified, WATCHDOG=1
only while frames are classified, and STATUS= lines. The ``reload`` event (SIGHUP) re-reads the
config and swaps the model only after the new bundle passed every check in a child process.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.capture import CaptureThread, FrameMailbox, SourceEndedError, open_source
from edge.capture.base import Frame
from edge.capture.thread import Backoff
from edge.classifier import Classifier, load_classifier
from edge.collect.collector import Collector, Origin, Suggestion
from edge.collect.inbox import Inbox
from edge.config import CollectConfig, Config, SourceConfig, load_config, state_dir
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.health import Health, HealthSnapshot
from edge.publish.outputs import Outputs
from edge.publish.settings import default_device_id
from edge.publish.telemetry import Telemetry
from edge.results import ResultFilter, thresholded
from edge.systemd import Notifier
from edge.verify import verify_in_child

log = logging.getLogger(__name__)

TAKE_TIMEOUT_S = 0.5  # how often the loop wakes without frames, to notice stop and reload requests
JOIN_TIMEOUT_S = 10.0  # a capture thread stuck in a driver call is abandoned (it is a daemon thread)
HEALTH_LOG_INTERVAL_S = 60.0  # a line of counters in the log, so a journal shows how the daemon fares
STATUS_INTERVAL_S = 5.0  # how often systemd's STATUS= line is refreshed


class Capture:
    """A source's capture thread and the mailbox it fills, started and stopped together."""

    def __init__(self, config: SourceConfig, model_size: tuple[int, int], health: Health) -> None:
        self.source = open_source(config, model_size)
        self.mailbox = FrameMailbox()
        self._stop = threading.Event()  # its own: it ends when the loop ends, by signal, end, error or reload
        backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self.thread = CaptureThread(self.source, self.mailbox, health, self._stop, backoff)
        self.thread.start()

    def take(self, timeout: float) -> Frame | None:
        return self.mailbox.take(timeout)

    def close(self) -> None:
        self._stop.set()
        self.mailbox.close()
        self.thread.join(JOIN_TIMEOUT_S)
        if self.thread.is_alive():
            log.warning("the capture thread did not stop within %.0f s; leaving it behind", JOIN_TIMEOUT_S)


@dataclass
class Live:
    """What a config makes live; a reload replaces the parts whose settings changed."""

    config: Config
    classifier: Classifier
    results: ResultFilter
    dataloop: Collector | None
    capture: Capture


def load_model(config: Config, health: Health, telemetry: Telemetry) -> Classifier:
    """Load the model and re-run its golden samples; publish what is live."""
    classifier = load_classifier(config.model)
    checked = classifier.golden_check()
    describe = classifier.describe()
    health.update(model=describe | {"golden_checked": checked})
    telemetry.set_model(
        classifier.manifest.name,
        classifier.manifest.version,
        sha256=str(describe.get("sha256", "")),
        runtime=str(describe.get("runtime", "")),
        labels=classifier.manifest.labels,
    )
    log.info("model %s ready (%d golden samples agree)", classifier.name, checked)
    return classifier


def start(config: Config, health: Health, telemetry: Telemetry) -> Live:
    classifier = load_model(config, health, telemetry)
    capture = Capture(config.source, _model_size(classifier), health)
    return Live(
        config,
        classifier,
        ResultFilter(config.results, classifier.manifest.labels),
        _dataloop(config, capture, telemetry),
        capture,
    )


def _dataloop(config: Config, capture: Capture, telemetry: Telemetry) -> Collector | None:
    """The data loop: frames worth relabelling into the inbox under the state directory."""
    if config.dataloop is None:
        return None
    collect = config.collect or CollectConfig()
    inbox = Inbox(state_dir(config) / "inbox", int(collect.max_mb * 1024 * 1024))
    origin = Origin(capture.source.description, config.source.roi, telemetry.device_id)
    return Collector(inbox, origin, collect, config.dataloop, scene=False)


def _model_size(classifier: Classifier) -> tuple[int, int]:
    spec = classifier.manifest.preprocess
    return spec.width, spec.height


def reload_live(live: Live, config_path: Path, health: Health, telemetry: Telemetry) -> Live:
    """The config and model read again; the new bundle is checked in a child first, so a corrupt
    flatbuffer can only crash the child. Raises ``EdgesightError`` and leaves ``live`` untouched on failure."""
    config = load_config(config_path)
    if Path(config.model.path).is_dir():
        verify_in_child(Path(config.model.path).resolve())  # named by its version, not by `current`
    classifier = load_model(config, health, telemetry)
    new = replace(live, config=config, classifier=classifier)
    if config.results != live.config.results or classifier.manifest.labels != live.classifier.manifest.labels:
        new.results = ResultFilter(config.results, classifier.manifest.labels)
    if config.source != live.config.source or _model_size(classifier) != _model_size(live.classifier):
        live.capture.close()
        new.capture = Capture(config.source, _model_size(classifier), health)
    teach = (config.dataloop, config.collect, config.source)
    if teach != (live.config.dataloop, live.config.collect, live.config.source):
        new.dataloop = _dataloop(config, new.capture, telemetry)
    for section in ("output", "mqtt", "http"):
        if getattr(config, section) != getattr(live.config, section):
            log.warning("[%s] changed: it takes effect when the service restarts", section)
    return new


class Publisher:
    """Where each result goes: the outputs, telemetry, ``emit``; and the health that telemetry mirrors."""

    def __init__(self, telemetry: Telemetry, outputs: Outputs, emit: Callable[[dict], None] | None) -> None:
        self.telemetry, self.outputs, self.emit = telemetry, outputs, emit
        self._dropped = 0

    def result(self, image: np.ndarray, record: dict[str, Any]) -> None:
        self.outputs.submit(record)
        self.telemetry.on_result(image, record, record["frame_age_ms"], record["latency_ms"])
        if self.emit is not None:
            self.emit(record)

    def mirror(self, snapshot: HealthSnapshot) -> None:
        """Source state and lost frames from the capture side into telemetry (healthz, metrics, stats)."""
        lost = snapshot.frames_dropped + snapshot.frames_skipped
        if lost > self._dropped:
            self.telemetry.on_drop(lost - self._dropped)
            self._dropped = lost
        state = snapshot.source_state
        reason = state if not snapshot.source_error or state == "open" else f"{state}: {snapshot.source_error}"
        self.telemetry.set_source_state(state == "open", reason)


def run(
    config: Config,
    stop: threading.Event,
    emit: Callable[[dict], None] | None = None,
    health: Health | None = None,
    *,
    notifier: Notifier | None = None,
    reload: threading.Event | None = None,
    config_path: Path | None = None,
) -> HealthSnapshot:
    """Classify the configured source's frames; return the final health."""
    health = health or Health()
    notifier = notifier or Notifier({})
    telemetry = Telemetry(config.mqtt.resolved_device_id() if config.mqtt else default_device_id())
    notifier.status("loading the model")
    live = start(config, health, telemetry)
    lock = threading.Lock()  # the interpreter serves the loop and POST /api/classify, one call at a time

    def classify(image: np.ndarray) -> dict[str, Any]:
        with lock:
            return live.classifier.classify(image).to_json()

    try:
        outputs = Outputs(
            telemetry,
            output=config.output if config.output.jsonl else None,
            mqtt=config.mqtt,
            http=config.http,
            classify=classify,
        )
    except BaseException:  # a port in use, a missing secret: stop the capture before the error goes up
        live.capture.close()
        raise
    publisher = Publisher(telemetry, outputs, emit)
    notifier.status(f"waiting for the first frame from {live.capture.source.description}")
    ready = False
    next_report = time.monotonic() + HEALTH_LOG_INTERVAL_S
    next_status = next_watchdog = 0.0
    watchdog_period = (notifier.watchdog_seconds or 0) / 3
    outputs.start()
    try:
        while not stop.is_set():
            now = time.monotonic()
            publisher.mirror(health.snapshot())
            if now >= next_report:
                log.info("%s", health.snapshot().summary())
                next_report = now + HEALTH_LOG_INTERVAL_S
            if reload is not None and reload.is_set():
                reload.clear()
                live = _reload(live, config_path or Path(), health, telemetry, notifier, lock)
            try:
                frame = live.capture.take(TAKE_TIMEOUT_S)
            except SourceEndedError:
                break
            if frame is None:
                continue
            started = time.monotonic()
            with lock:
                image, record, changed = _classify(live, frame)
            publisher.result(image, record)
            health.count(frames_classified=1)
            health.update(last_result=record, latency_ms=record["latency_ms"], frame_age_ms=record["frame_age_ms"])
            if live.dataloop is not None:
                model = f"{live.classifier.manifest.name} {live.classifier.manifest.version}"
                suggestion = Suggestion(tuple((lbl, s) for lbl, s in record["topk"]), model, changed)
                if live.dataloop.offer(image, frame.ts, frame.index, suggestion):
                    kept = sum(live.dataloop.counters.kept.values())
                    health.update(dataloop_saved=kept, dataloop_removed=live.dataloop.inbox.evicted)
            now = time.monotonic()
            if not ready:
                ready = True
                notifier.ready(_status(live, telemetry))
                next_status = now + STATUS_INTERVAL_S
            elif now >= next_status:
                notifier.status(_status(live, telemetry))
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
    final = health.snapshot()
    log.info("%s", final.summary())
    return final


def _classify(live: Live, frame: Frame) -> tuple[np.ndarray, dict[str, Any], bool]:
    """One frame's result record, the image it was computed on, and whether the state changed."""
    config = live.config
    image = crop(frame.image, config.source.roi)
    result = live.classifier.classify(image)
    decision = live.results.update(result.probabilities)
    record = {
        "ts": round(frame.ts, 3),
        "frame": frame.index,
        **result.to_json(),
        "frame_age_ms": round((time.monotonic() - frame.captured) * 1000, 1),
        "state": decision.state,
        "state_changed": decision.changed,
    }
    record["label"] = thresholded(result.label, result.score, config.results.threshold)
    if config.results.smoothing != "none":
        record["smoothed"] = {"label": decision.label, "score": round(decision.score, 4)}
    return image, record, decision.changed


def _reload(
    live: Live, config_path: Path, health: Health, telemetry: Telemetry, notifier: Notifier, lock: threading.Lock
) -> Live:
    """Apply a reload request; on any failure the old model keeps running and the failure is reported."""
    notifier.reloading(time.monotonic_ns() // 1000)
    log.info("reload requested: reading %s", config_path)
    try:
        with lock:
            new = reload_live(live, config_path, health, telemetry)
    except EdgesightError as e:
        log.error("reload refused, %s keeps running: %s", live.classifier.name, e)
        health.update(reload_error=str(e))
        telemetry.on_reload(False, str(e))
        notifier.ready(f"reload refused ({e}); {_status(live, telemetry)}")
        return live
    log.info("reloaded: %s is live", new.classifier.name)
    health.update(reload_error="")
    telemetry.on_reload(True, f"{new.classifier.name} is live")
    notifier.ready(_status(new, telemetry))
    return new


def _status(live: Live, telemetry: Telemetry) -> str:
    stats = telemetry.stats()
    last = telemetry.latest_result() or {}
    return (
        f"{live.classifier.name}: {stats['fps']:.1f} fps, {stats['frames']} frames, last "
        f"{last.get('label')} {last.get('score', 0):.2f}; source {live.capture.source.description}"
    )


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
