"""The daemon's TOML configuration: typed sections, documented defaults, unknown keys rejected.

Every error names the file, the line, the key and what is allowed, and exits 78 (EX_CONFIG) so that
systemd does not restart-loop on a broken config. Relative paths are relative to the config file.
"""

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from edge.errors import EXIT_CONFIG, EdgesightError


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from: a video file, an image folder or glob, a camera index, /dev/videoN or a URL."""

    uri: str
    loop: bool = False  # restart a video file or image folder at its end


@dataclass(frozen=True)
class ModelConfig:
    path: str  # a bundle directory
    threads: int = 2  # interpreter threads; the Pi Zero 2 W and Pi 4/5 have 4 cores
    top_k: int = 3


@dataclass(frozen=True)
class OutputConfig:
    jsonl: str = "-"  # '-' is stdout, anything else a file that is appended to


@dataclass(frozen=True)
class Config:
    source: SourceConfig
    model: ModelConfig
    output: OutputConfig = field(default_factory=OutputConfig)


PATH_KEYS = {("source", "uri"), ("model", "path"), ("output", "jsonl")}


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
            if key not in fields:
                raise self.error(name, key, f"is not a known key; allowed: {', '.join(fields)}")
        values = {}
        for key, f in fields.items():
            if key not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise self.error(name, None, f"needs the key {key!r}")
                continue
            values[key] = self.value(name, key, data[key], hints[key])
        return cls(**values)

    def value(self, section: str, key: str, value: Any, kind: type) -> Any:
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(section, key, f"must be an integer (got {value!r})")
        if kind is bool and not isinstance(value, bool):
            raise self.error(section, key, f"must be true or false (got {value!r})")
        if kind is str:
            if isinstance(value, int) and not isinstance(value, bool) and section == "source":
                value = str(value)  # camera index written as a number
            if not isinstance(value, str):
                raise self.error(section, key, f"must be a string (got {value!r})")
        if kind is int and value < 1:
            raise self.error(section, key, f"must be at least 1 (got {value})")
        return value


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
            if f.default_factory is dataclasses.MISSING:
                raise EdgesightError(f"{path}: the [{name}] section is required", EXIT_CONFIG)
            continue
        values[name] = checker.section(hints[name], name, _resolve_paths(name, data[name], path.parent))
    return Config(**values)


def _resolve_paths(section: str, data: Any, base: Path) -> Any:
    if not isinstance(data, dict):
        return data
    resolved = dict(data)
    for key, value in data.items():
        if (section, key) in PATH_KEYS and isinstance(value, str) and _is_relative_path(value):
            resolved[key] = str(base / value)
    return resolved


def _is_relative_path(value: str) -> bool:
    return bool(value) and value != "-" and not value.isdigit() and "://" not in value and not Path(value).is_absolute()
