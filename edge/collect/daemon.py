"""The teach loop inside the daemon: whether the model is needed (not while collecting without one), the
labelling store behind /label, the collector every frame is offered to, and the latest frame for bursts."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.collect.api import DatasetApi
from edge.collect.burst import LatestFrame
from edge.collect.collector import Collector, Origin
from edge.collect.labelling import Labelling
from edge.config import CollectConfig, Config, state_dir
from edge.errors import EXIT_CONFIG, EdgesightError

log = logging.getLogger(__name__)

MB = 1024 * 1024
COLLECT_SIZE = (640, 480)  # without a model, picamera2's lores stream at a size worth labelling
# Without a model nothing needs every frame: ten a second keeps bursts and the live view smooth and
# spares a Pi the decoding of the rest.
COLLECT_MAX_FPS = 10.0


def model_wanted(config: Config, collect: bool) -> bool:
    """Load ``[model]``? Not when there is none; not yet when collecting and its path does not exist (a fresh
    Pi before its first `make deploy`: a reload then makes it live)."""
    if config.model is None:
        return False
    if (collect or config.collect is not None) and not Path(config.model.path).exists():
        log.warning(
            "[model] path %s does not exist yet: collecting frames for labelling only; deploy a bundle and reload",
            config.model.path,
        )
        return False
    return True


def scene_collecting(config: Config, collect: bool, with_model: bool) -> bool:
    """Keep frames at an interval and on scene changes: `edgesight collect`, a [collect] section, or no model."""
    return collect or config.collect is not None or not with_model


@dataclass
class Teach:
    """The parts that live as long as the process: what /label and /api/dataset serve."""

    labelling: Labelling
    frames: LatestFrame = field(default_factory=LatestFrame)
    collector: Collector | None = None  # replaced when a reload changes it

    def api(self, jpeg_quality: int) -> DatasetApi:
        return DatasetApi(self.labelling, self.frames, self.counters, jpeg_quality)

    def counters(self) -> dict[str, Any] | None:
        collector = self.collector
        if collector is None:
            return None
        counters = collector.counters
        return {"kept": dict(counters.kept), "near_copies": counters.duplicates, "failed": counters.failed}


def store_settings(config: Config) -> tuple[Path, float]:
    """What the labelling store is opened with: a change takes effect on restart."""
    return state_dir(config), (config.collect or CollectConfig()).max_mb


def open_teach(config: Config, needed: bool) -> Teach | None:
    """The inbox and dataset under the state directory. ``needed`` (collecting, or a data loop): a folder that
    cannot be used is a config error; otherwise (only /label would miss it) a warning and None."""
    collect = config.collect or CollectConfig()
    folder = state_dir(config)
    try:
        return Teach(Labelling(folder, int(collect.max_mb * MB)))
    except OSError as e:
        message = f"[collect] state_dir {folder}: cannot be used ({e.strerror}); set a writable folder"
        if needed:
            raise EdgesightError(message, EXIT_CONFIG) from e
        log.warning("%s; /label and /api/dataset are off", message)
        return None


def make_collector(teach: Teach | None, config: Config, origin: Origin, *, scene: bool, with_model: bool) -> None:
    """Set the collector frames are offered to: interval and scene changes when ``scene``, the data loop's
    frames when a model is loaded and ``[dataloop]`` is present; none when neither applies."""
    if teach is None:
        return
    dataloop = config.dataloop if with_model else None
    if not scene and dataloop is None:
        teach.collector = None
        return
    teach.collector = Collector(teach.labelling.inbox, origin, config.collect or CollectConfig(), dataloop, scene=scene)
