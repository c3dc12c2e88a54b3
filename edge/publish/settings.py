"""Settings of the publishing sinks: one frozen dataclass per config section, with documented defaults.

Shaped like the sections of ``edge.config`` (str, int, float and bool fields only), so the daemon's
config gains ``[mqtt]``, ``[http]`` and ``[output]`` by listing these classes. ``problems()`` names each
bad key with what is allowed; ``check()`` turns the first into an ``EdgesightError`` that exits 78.
"""

import re
import socket
from dataclasses import dataclass

from edge.errors import EXIT_CONFIG, EdgesightError

# Characters Home Assistant accepts in discovery node ids; also safe inside every MQTT topic level.
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
QOS_LEVELS = (0, 1, 2)


def default_device_id() -> str:
    """The host name made safe for MQTT topics and Home Assistant ids."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "edgesight"


@dataclass(frozen=True)
class MqttSettings:
    """``[mqtt]``: publish results to a broker under ``<topic_prefix>/<device_id>/``."""

    host: str = "localhost"
    port: int = 1883  # 8883 is the usual port with tls = true
    device_id: str = ""  # empty: the host name
    topic_prefix: str = "edgesight"
    client_id: str = ""  # empty: edgesight-<device_id>
    keepalive: int = 30  # seconds; the broker publishes the Last Will after 1.5 × this of silence
    username: str = ""
    password_file: str = ""  # empty: $CREDENTIALS_DIRECTORY/mqtt_password when it exists
    tls: bool = False
    ca_file: str = ""  # empty: the system's CA certificates
    cert_file: str = ""  # client certificate, with key_file, for brokers that require one
    key_file: str = ""
    qos_state: int = 1
    qos_result: int = 0
    qos_event: int = 1
    qos_stats: int = 0
    result_interval_s: float = 0.0  # publish at most one `result` per interval; 0 publishes every one
    stats_interval_s: float = 30.0
    snapshot_interval_s: float = 10.0  # the annotated frame on `snapshot` (a Home Assistant camera); 0 = off
    snapshot_width: int = 640
    queue_size: int = 1000  # messages held while the broker is unreachable; the oldest go first
    reconnect_min_s: int = 1  # reconnect backoff doubles from this ...
    reconnect_max_s: int = 60  # ... up to this
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"

    def resolved_device_id(self) -> str:
        return self.device_id or default_device_id()

    def problems(self) -> list[tuple[str, str]]:
        found = []
        if not self.host:
            found.append(("host", "must name the broker (a host name or address)"))
        if not 1 <= self.port <= 65535:
            found.append(("port", f"must be within 1..65535 (got {self.port})"))
        if self.device_id and not DEVICE_ID.match(self.device_id):
            found.append(("device_id", f"may hold only letters, digits, _ and - (got {self.device_id!r})"))
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if not value or any(ch in value for ch in "+#") or value.startswith("/") or value.endswith("/"):
                found.append((key, f"must be a topic without wildcards or leading/trailing '/' (got {value!r})"))
        for key in ("qos_state", "qos_result", "qos_event", "qos_stats"):
            if getattr(self, key) not in QOS_LEVELS:
                found.append((key, f"must be 0, 1 or 2 (got {getattr(self, key)!r})"))
        if self.keepalive < 5:
            found.append(("keepalive", f"must be at least 5 seconds (got {self.keepalive})"))
        if self.result_interval_s < 0:
            found.append(("result_interval_s", f"must not be negative (got {self.result_interval_s})"))
        if self.stats_interval_s <= 0:
            found.append(("stats_interval_s", f"must be positive (got {self.stats_interval_s})"))
        if self.snapshot_interval_s < 0:
            found.append(("snapshot_interval_s", f"must not be negative (got {self.snapshot_interval_s})"))
        if self.snapshot_width < 1:
            found.append(("snapshot_width", f"must be at least 1 (got {self.snapshot_width})"))
        if self.queue_size < 1:
            found.append(("queue_size", f"must be at least 1 (got {self.queue_size})"))
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            found.append(("reconnect_min_s", "must be at least 1 and at most reconnect_max_s"))
        if bool(self.cert_file) != bool(self.key_file):
            found.append(("cert_file", "and key_file go together: set both or neither"))
        if (self.ca_file or self.cert_file) and not self.tls:
            found.append(("tls", "must be true when ca_file or cert_file is set"))
        return found


@dataclass(frozen=True)
class HttpSettings:
    """``[http]``: the status page, JSON API, Prometheus ``/metrics`` and ``POST /api/classify``."""

    host: str = "127.0.0.1"  # loopback only; 0.0.0.0 serves the network (set a token then)
    port: int = 8080
    token_file: str = ""  # bearer token; empty: $CREDENTIALS_DIRECTORY/http_token when it exists
    max_upload_bytes: int = 5_000_000
    max_upload_pixels: int = 12_000_000  # checked from the header before decoding
    snapshot_width: int = 640  # the snapshot is scaled to this width
    snapshot_quality: int = 80  # JPEG quality
    stale_after_s: float = 10.0  # /healthz turns 503 when no frame was classified for this long

    def problems(self) -> list[tuple[str, str]]:
        found = []
        if not 0 <= self.port <= 65535:
            found.append(("port", f"must be within 0..65535 (got {self.port}; 0 picks a free port)"))
        for key in ("max_upload_bytes", "max_upload_pixels", "snapshot_width"):
            if getattr(self, key) < 1:
                found.append((key, f"must be at least 1 (got {getattr(self, key)})"))
        if not 1 <= self.snapshot_quality <= 100:
            found.append(("snapshot_quality", f"must be within 1..100 (got {self.snapshot_quality})"))
        if self.stale_after_s <= 0:
            found.append(("stale_after_s", f"must be positive (got {self.stale_after_s})"))
        return found


@dataclass(frozen=True)
class OutputSettings:
    """``[output]``: JSON lines, one per result, to stdout or to a file rotated by size."""

    jsonl: str = "-"  # '-' is stdout, "" is off, anything else a file that is appended to
    rotate_bytes: int = 10_000_000  # a file past this size is renamed to <file>.1, <file>.1 to <file>.2, ...
    keep: int = 5  # rotated files kept
    queue_size: int = 1000

    def problems(self) -> list[tuple[str, str]]:
        found = []
        for key in ("rotate_bytes", "keep", "queue_size"):
            if getattr(self, key) < 1:
                found.append((key, f"must be at least 1 (got {getattr(self, key)})"))
        return found


Settings = MqttSettings | HttpSettings | OutputSettings


def check(settings: Settings, section: str) -> None:
    """Raise for the first problem, naming ``[section] key``; exit code 78 (bad configuration)."""
    problems = settings.problems()
    if problems:
        key, what = problems[0]
        raise EdgesightError(f"[{section}] {key} {what}", EXIT_CONFIG)
