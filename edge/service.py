"""The daemon: load and check the model, capture in its own thread, classify the freshest frame,
smooth, emit results until the source ends or the stop event is set (SIGINT/SIGTERM).

``emit`` receives one result dict per classified frame; publishers (JSONL, MQTT, HTTP) plug in there
and read ``Health`` for the daemon's state.
"""

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge.capture import CaptureThread, FrameMailbox, SourceEndedError, open_source
from edge.capture.thread import Backoff
from edge.classifier import load_classifier
from edge.config import Config
from edge.dataloop import DataLoop
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.health import Health, HealthSnapshot
from edge.results import ResultFilter, thresholded

log = logging.getLogger(__name__)

TAKE_TIMEOUT_S = 0.5  # how often the loop wakes without frames, to notice the stop event
JOIN_TIMEOUT_S = 10.0  # a capture thread stuck in a driver call is abandoned (it is a daemon thread)
HEALTH_LOG_INTERVAL_S = 60.0  # a line of counters in the log, so a journal shows how the daemon fares


def run(
    config: Config, stop: threading.Event, emit: Callable[[dict], None], health: Health | None = None
) -> HealthSnapshot:
    """Classify the configured source's frames; return the final health."""
    health = health or Health()
    classifier = load_classifier(config.model)
    checked = classifier.golden_check()
    health.update(model=classifier.describe() | {"golden_checked": checked})
    log.info("model %s ready (%d golden samples agree)", classifier.name, checked)
    spec = classifier.manifest.preprocess
    source = open_source(config.source, (spec.width, spec.height))
    mailbox = FrameMailbox()
    backoff = Backoff(config.source.reconnect_min_s, config.source.reconnect_max_s)
    # The capture thread has its own stop: it ends when this loop ends, whether by signal, end or error.
    capture_stop = threading.Event()
    capture = CaptureThread(source, mailbox, health, capture_stop, backoff)
    results = ResultFilter(config.results, classifier.manifest.labels)
    dataloop = DataLoop(config.dataloop) if config.dataloop.dir else None
    interval = 1.0 / config.source.max_fps if config.source.max_fps else 0.0
    capture.start()
    next_report = time.monotonic() + HEALTH_LOG_INTERVAL_S
    try:
        while not stop.is_set():
            if time.monotonic() >= next_report:
                log.info("%s", health.snapshot().summary())
                next_report += HEALTH_LOG_INTERVAL_S
            try:
                frame = mailbox.take(TAKE_TIMEOUT_S)
            except SourceEndedError:
                break
            if frame is None:
                continue
            started = time.monotonic()
            image = crop(frame.image, config.source.roi)
            result = classifier.classify(image)
            decision = results.update(result.probabilities)
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
            emit(record)
            health.count(frames_classified=1)
            health.update(last_result=record, latency_ms=record["latency_ms"], frame_age_ms=record["frame_age_ms"])
            if dataloop is not None and dataloop.offer(image, record, result.score, decision.changed):
                health.update(dataloop_saved=dataloop.saved, dataloop_removed=dataloop.removed)
            if interval and stop.wait(max(0.0, started + interval - time.monotonic())):
                break
    finally:
        capture_stop.set()
        mailbox.close()
        capture.join(JOIN_TIMEOUT_S)
        if capture.is_alive():
            log.warning("the capture thread did not stop within %.0f s; leaving it behind", JOIN_TIMEOUT_S)
    final = health.snapshot()
    log.info("%s", final.summary())
    return final


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
