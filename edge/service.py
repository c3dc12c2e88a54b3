"""The daemon loop: load and check the bundle, read frames, classify, emit results until the source
ends or the stop event is set (SIGINT/SIGTERM)."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge.bundle import load_bundle
from edge.capture import open_source
from edge.classifier import Classifier
from edge.config import Config

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    frames: int = 0
    skipped: int = 0


def run(config: Config, stop: threading.Event, emit: Callable[[dict], None]) -> RunStats:
    """Classify every frame of the configured source; ``emit`` receives one result dict per frame."""
    bundle = load_bundle(config.model.path)
    classifier = Classifier(bundle, num_threads=config.model.threads, top_k=config.model.top_k)
    checked = classifier.golden_check()
    log.info("bundle %s %s ready, %d golden samples agree", bundle.manifest.name, bundle.manifest.version, checked)
    stats = RunStats()
    with open_source(config.source.uri, loop=config.source.loop) as source:
        log.info("reading %s", source.description)
        for frame in source.frames():
            if stop.is_set():
                break
            result = classifier.classify(frame.image)
            emit({"ts": round(frame.ts, 3), "frame": frame.index, **result.to_json()})
            stats.frames += 1
        stats.skipped = source.skipped
    log.info("%d frames classified, %d skipped", stats.frames, stats.skipped)
    return stats
