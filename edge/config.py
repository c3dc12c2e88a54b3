"""The daemon's TOML configuration: typed sections, documented defaults, unknown keys rejected.

Every error names the file, the line, the key and what is allowed, and exits 78 (EX_CONFIG) so that
systemd does not restart-loop on a broken config. Relative paths are relative to the config file.
Each key's default and meaning is the comment beside it; bounds are in the field's metadata.
"""

import dataclasses
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.images import MAX_PIXELS
from edge.publish.settings import HttpSettings, MqttSettings, OutputSettings


def key(default: Any, *, low: float | None = None, high: float | None = None) -> Any:
    """A config key with its default and the closed range its value must lie in."""
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from: a video file, an image folder or glob, a camera index, /dev/videoN, an
    rtsp:// or http:// URL, or ``picamera2`` (``picamera2:1`` for the second camera)."""

    uri: str
    loop: bool = False  # restart a video file or image folder at its end
    pace: bool = False  # deliver a video file at its own frame rate, like a camera (stale frames dropped)
    width: int = key(0, low=0)  # camera capture width (V4L2; picamera2 main stream); 0 = see shrink_at_source
    height: int = key(0, low=0)  # camera capture height; 0 = device default, or see shrink_at_source
    fps: float = key(0.0, low=0, high=1000)  # requested camera frame rate; 0 = device default
    fourcc: str = ""  # V4L2 pixel format, e.g. "MJPG": USB cameras give more size and rate compressed
    lores_width: int = key(0, low=0)  # picamera2 lores stream width; 0 = the model's input width
    lores_height: int = key(0, low=0)  # picamera2 lores stream height; 0 = the model's input height
    buffers: int = key(2, low=1, high=16)  # picamera2 buffer count; a Pi Zero 2 W has little CMA memory
    timeout_s: float = key(5.0, low=0.1, high=300)  # an open or read taking longer counts as a lost source
    reconnect_min_s: float = key(0.5, low=0.01, high=3600)  # first wait before reopening a lost source
    reconnect_max_s: float = key(30.0, low=0.01, high=3600)  # the wait doubles up to this
    max_fps: float = key(0.0, low=0, high=1000)  # classify at most this often (saves power); 0 = no limit
    roi: tuple[int, ...] = ()  # [x, y, width, height] crop of the captured frame; empty = whole frame
    # Smaller frames where the source can give them (not with roi): a V4L2 camera without width and height
    # at its default size halved while it covers the model; MJPEG streams decoded at 1/2, 1/4 or 1/8 scale
    # while the frame covers the model, for models whose contract resizes by area; not while frames are
    # kept for a dataset ([collect], [dataloop], no model)
    shrink_at_source: bool = True
    max_pixels: int = key(MAX_PIXELS, low=1)  # image files declaring more pixels are skipped, not decoded


@dataclass(frozen=True)
class ModelConfig:
    """A bundle directory, or a plain ``.tflite`` (labels from ``labels``, a labels.txt beside it, or
    the model's TFLite metadata)."""

    path: str
    threads: int = key(2, low=1, high=64)  # interpreter threads; the Pi Zero 2 W and Pi 4/5 have 4 cores
    top_k: int = key(3, low=1, high=1000)  # ranked labels reported with each result
    delegate: Literal["auto", "cpu", "edgetpu"] = "auto"  # auto: the Edge TPU when the model is compiled for it
    labels: str = ""  # plain .tflite only: a labels file; empty = labels.txt beside the model, or metadata
    mean: tuple[float, ...] = ()  # plain .tflite only: pixel mean (0..255); empty = metadata or the model's own
    std: tuple[float, ...] = ()  # plain .tflite only: pixel std; empty = metadata or the model's own


@dataclass(frozen=True)
class ResultsConfig:
    threshold: float = key(0.0, low=0, high=1)  # below this top-1 score the label is "unknown"
    smoothing: Literal["none", "ema", "majority"] = "none"  # temporal smoothing of the scores or labels
    ema_alpha: float = key(0.5, low=0.01, high=1)  # weight of the newest frame in the EMA
    window: int = key(5, low=1, high=1000)  # frames the majority vote looks back over
    debounce: int = key(1, low=1, high=1000)  # consecutive frames that must agree before the state changes


@dataclass(frozen=True)
class CollectConfig:
    """The teach loop: frames kept in an inbox under ``state_dir`` for labelling on the /label page, and the
    labelled dataset beside it. Collecting runs when the section is present, or when there is no model."""

    state_dir: str = ""  # inbox/ and dataset/ live here; empty = $STATE_DIRECTORY, else ~/.local/state/edgesight
    interval_s: float = key(60.0, low=0, high=86400)  # keep a frame this often; 0 = only on scene changes
    on_change: bool = True  # also keep a frame as soon as the scene changes
    change: float = key(0.05, low=0.001, high=1)  # scene change: mean difference from the last kept frame (0..1)
    duplicate: float = key(0.02, low=0, high=1)  # closer than this to a recently kept frame: skipped as a copy
    min_interval_s: float = key(1.0, low=0, high=86400)  # at most one frame per this many seconds
    max_mb: float = key(200.0, low=0.1, high=1e6)  # the inbox's size cap; the oldest pairs go first
    jpeg_quality: int = key(90, low=50, high=100)  # of the kept frames


@dataclass(frozen=True)
class DataLoopConfig:
    """With a model: frames worth relabelling (low confidence, a change of state) go into the inbox with the
    model's top-k as the suggestion. Off unless the section is present."""

    below: float = key(0.5, low=0, high=1)  # keep frames whose top-1 score is below this
    on_change: bool = True  # keep frames where the debounced state changes
    min_interval_s: float = key(1.0, low=0, high=86400)  # at most one kept frame per this many seconds


@dataclass(frozen=True)
class Config:
    source: SourceConfig
    model: ModelConfig | None = None  # none: the daemon only collects frames for labelling
    results: ResultsConfig = field(default_factory=ResultsConfig)
    collect: CollectConfig | None = None  # on when present, and always without a model
    dataloop: DataLoopConfig | None = None  # on when present (and a model is loaded)
    output: OutputSettings = field(default_factory=OutputSettings)  # JSON lines; jsonl = "" turns them off
    mqtt: MqttSettings | None = None  # off unless the section is present
    http: HttpSettings | None = None  # off unless the section is present


PATH_KEYS = {
    ("source", "uri"),
    ("model", "path"),
    ("model", "labels"),
    ("output", "jsonl"),
    ("collect", "state_dir"),
    ("mqtt", "password_file"),
    ("mqtt", "ca_file"),
    ("mqtt", "cert_file"),
    ("mqtt", "key_file"),
    ("http", "token_file"),
}

# Keys that older versions knew, with where their job went.
MOVED = {
    ("dataloop", "dir"): "is gone: the data loop's frames go to the inbox under [collect] state_dir; remove the key",
    ("dataloop", "max_mb"): "is gone: the inbox's size cap is [collect] max_mb; remove the key",
}


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Line number of ``key`` in ``[section]`` (or of the section header), for error messages."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[([^\[\]]+)\]", stripped)
        if header:
            current = header.group(1).strip()
            if key is None and current == section:
                return number
            continue
        if key and current == section and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return None


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def error(self, section: str, key: str | None, what: str) -> EdgesightError:
        line = _line_of(self.text, section, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"[{section}] {key}" if key else f"[{section}]"
        return EdgesightError(f"{where}: {name} {what}", EXIT_CONFIG)

    def section(self, cls: type, name: str, data: Any) -> Any:
        if not isinstance(data, dict):
            raise self.error(name, None, "must be a table")
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in data:
            if (name, key) in MOVED:
                raise self.error(name, key, MOVED[name, key])
            if key not in fields:
                raise self.error(name, key, f"is not a known key; allowed: {', '.join(fields)}")
        values = {}
        for key, f in fields.items():
            if key not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise self.error(name, None, f"needs the key {key!r}")
                continue
            value = self.value(name, key, data[key], hints[key])
            self.bounds(name, key, value, f.metadata)
            values[key] = value
        return cls(**values)

    def value(self, section: str, key: str, value: Any, kind: Any) -> Any:
        if typing.get_origin(kind) is Literal:
            allowed = typing.get_args(kind)
            if value not in allowed or not isinstance(value, str):
                raise self.error(section, key, f"must be one of {', '.join(allowed)} (got {value!r})")
            return value
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            if not isinstance(value, list):
                raise self.error(section, key, f"must be a list of {_names[item]}s (got {value!r})")
            return tuple(self.value(section, key, v, item) for v in value)
        if kind is bool:
            if not isinstance(value, bool):
                raise self.error(section, key, f"must be true or false (got {value!r})")
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(section, key, f"must be an integer (got {value!r})")
            return value
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise self.error(section, key, f"must be a number (got {value!r})")
            return float(value)
        if isinstance(value, int) and not isinstance(value, bool) and section == "source":
            value = str(value)  # camera index written as a number
        if not isinstance(value, str):
            raise self.error(section, key, f"must be a string (got {value!r})")
        return value

    def bounds(self, section: str, key: str, value: Any, metadata: Any) -> None:
        low, high = metadata.get("low"), metadata.get("high")
        for v in value if isinstance(value, tuple) else (value,):
            if not isinstance(v, int | float) or isinstance(v, bool):
                continue
            if low is not None and v < low:
                raise self.error(section, key, f"must be at least {low:g} (got {v})")
            if high is not None and v > high:
                raise self.error(section, key, f"must be at most {high:g} (got {v})")


_names = {int: "integer", float: "number", str: "string", bool: "boolean"}


def load_config(path: Path) -> Config:
    """Read and validate a config file; raise ``EdgesightError`` (exit 78) on any mistake."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise EdgesightError(f"{path}: no such config file", EXIT_CONFIG) from e
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesightError(f"{path}: unreadable config ({e})", EXIT_CONFIG) from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise EdgesightError(f"{path}: not valid TOML: {e}", EXIT_CONFIG) from e
    checker = _Checker(path, text)
    sections = {f.name: f for f in dataclasses.fields(Config)}
    hints = get_type_hints(Config)
    for name in data:
        if name not in sections:
            raise checker.error(name, None, f"is not a known section; allowed: {', '.join(sections)}")
    values = {}
    for name, f in sections.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise EdgesightError(f"{path}: the [{name}] section is required", EXIT_CONFIG)
            continue
        cls = next(t for t in typing.get_args(hints[name]) or (hints[name],) if t is not type(None))
        values[name] = checker.section(cls, name, _resolve_paths(name, data[name], path.parent))
        for key, what in getattr(values[name], "problems", list)():
            raise checker.error(name, key, what)
    config = Config(**values)
    _check_together(config, checker)
    return config


def _check_together(config: Config, checker: _Checker) -> None:
    """Rules that span keys."""
    source = config.source
    if not source.uri:
        raise checker.error("source", "uri", "must not be empty")
    if source.roi and (len(source.roi) != 4 or source.roi[2] < 1 or source.roi[3] < 1 or min(source.roi[:2]) < 0):
        raise checker.error("source", "roi", f"must be [x, y, width, height] with x, y >= 0 (got {list(source.roi)})")
    if bool(source.width) != bool(source.height) or bool(source.lores_width) != bool(source.lores_height):
        raise checker.error("source", "height", "and width go together: set both, or neither")
    if source.fourcc and (len(source.fourcc) != 4 or not source.fourcc.isascii()):
        raise checker.error("source", "fourcc", f"must be four ASCII characters such as MJPG (got {source.fourcc!r})")
    if source.reconnect_max_s < source.reconnect_min_s:
        raise checker.error("source", "reconnect_max_s", "must be at least reconnect_min_s")
    model = config.model
    for name in ("mean", "std") if model else ():
        values = getattr(model, name)
        if len(values) not in (0, 1, 3):
            raise checker.error("model", name, f"needs 1 or 3 values (got {len(values)})")
    if model and any(s <= 0 for s in model.std):
        raise checker.error("model", "std", "values must be positive")


def state_dir(config: Config) -> Path:
    """Where the inbox and the dataset live: ``[collect] state_dir``, else systemd's ``$STATE_DIRECTORY``,
    else ``$XDG_STATE_HOME/edgesight`` (``~/.local/state/edgesight``)."""
    if config.collect and config.collect.state_dir:
        return Path(config.collect.state_dir)
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edgesight"


def _resolve_paths(section: str, data: Any, base: Path) -> Any:
    if not isinstance(data, dict):
        return data
    resolved = dict(data)
    for key, value in data.items():
        if (section, key) in PATH_KEYS and isinstance(value, str) and _is_relative_path(value):
            resolved[key] = str(base / value)
    return resolved


def _is_relative_path(value: str) -> bool:
    return (
        bool(value)
        and value != "-"
        and not value.isdigit()
        and "://" not in value
        and not value.startswith("picamera2")
        and not Path(value).is_absolute()
    )
