"""MQTT: results, debounced state, state-change events, availability and stats, with Home Assistant discovery.

Topics under ``<topic_prefix>/<device_id>/``: ``state`` (retained), ``result``, ``event``, ``available``
(retained ``online``/``offline``, ``offline`` also the Last Will), ``stats`` and ``snapshot`` (the annotated
frame as JPEG, retained, every ``snapshot_interval_s``). paho-mqtt's network
thread reconnects with backoff; our worker hands messages to paho only while connected, so a
broker outage fills our bounded queue (oldest dropped, counted) and nothing else, and after the
reconnect the queue drains in order behind the messages paho resends.
"""

import json
import logging
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.base import Sink
from edge.publish.homeassistant import OFFLINE, ONLINE, config_topics_filter, discovery_configs
from edge.publish.secrets import read_secret
from edge.publish.settings import MqttSettings, check
from edge.publish.snapshot import SNAPSHOT_QUALITY, annotate, encode_jpeg
from edge.result import Result
from edge.state import LiveState, ModelInfo

log = logging.getLogger(__name__)

INFLIGHT = 20  # QoS 1/2 messages awaiting their acknowledgement, as paho's own default window
RECENT_ACKS = 1024  # acknowledgements that overtook publish() returning, kept to match them up


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Topics:
    state: str
    result: str
    event: str
    available: str
    stats: str
    snapshot: str

    @classmethod
    def of(cls, settings: MqttSettings) -> "Topics":
        base = f"{settings.topic_prefix}/{settings.resolved_device_id()}"
        names = ("state", "result", "event", "available", "stats", "snapshot")
        return cls(*(f"{base}/{name}" for name in names))


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class MqttSink(Sink):
    """Publishes results to an MQTT broker; never blocks the caller, reconnects on its own.

    ``state``, when given, supplies the model version for ``state``, the numbers for ``stats``, the frame
    for ``snapshot`` and the labels for Home Assistant's per-class sensors.
    """

    def __init__(self, settings: MqttSettings, state: LiveState | None = None) -> None:
        check(settings, "mqtt")
        super().__init__("mqtt", settings.queue_size)
        self.settings = settings
        self.topics = Topics.of(settings)
        self.live_state = state
        self.throttled = 0  # results not published because of result_interval_s (by design, not a loss)
        self._submit_lock = threading.Lock()
        self._state: dict[str, Any] | None = None
        self._last_result_at = -float("inf")
        # Connection state, guarded by the base class's condition.
        self._connected = False
        self._generation = 0  # successful connects so far
        self._announced = 0  # the generation whose announcement is done
        self._announce_again = False  # Home Assistant came online
        self._drain_first = False  # after a reconnect, paho's resent messages go before new ones
        self._pending: set[int] = set()
        self._early_acks: OrderedDict[int, None] = OrderedDict()
        self._delivered_state: Message | None = None
        self._announced_model: ModelInfo | None = None  # the worker's: the model the discovery configs describe
        self._announced_configs: set[str] = set()
        self._stale_configs: set[str] = set()  # configs of entities this device no longer has, to remove
        self._problem = ""
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"edgesight-{s.resolved_device_id()}",
            protocol=paho.MQTTv311,
        )
        password = read_secret(s.password_file, "mqtt_password", "[mqtt] password_file")
        if s.username or password:
            client.username_pw_set(s.username or None, password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file or None, certfile=s.cert_file or None, keyfile=s.key_file or None)
            except (OSError, ssl.SSLError) as e:
                raise EdgesightError(f"[mqtt] ca_file/cert_file/key_file: {e}", EXIT_CONFIG) from e
        client.will_set(self.topics.available, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.max_inflight_messages_set(INFLIGHT)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        s = self.settings
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive)
        self._client.loop_start()
        super().start()

    # The caller's side: turn a result into messages, without waiting for anything.

    def submit(self, result: Result) -> None:
        """Queue ``result`` (rate-limited by ``result_interval_s``), and ``state`` + ``event`` when the
        daemon's debounced state (``state``, ``state_changed`` of the result) changes."""
        now = time.monotonic()
        with self._submit_lock:
            publish_result = now - self._last_result_at >= self.settings.result_interval_s
            if publish_result:
                self._last_result_at = now
            else:
                self.throttled += 1
            changed = result.state_changed and result.state is not None
            before = self._state
            if changed:
                model = self.live_state.model if self.live_state else None
                self._state = {
                    "label": result.state,
                    "score": round((result.smoothed or result).score, 4),
                    "ts": round(result.ts, 3),
                    "model": model.name if model else None,
                    "model_version": model.version if model else None,
                }
        if publish_result:
            self._put(Message(self.topics.result, result.encoded, self.settings.qos_result, False))
        if changed:
            after = self._state
            assert after is not None
            self._put(Message(self.topics.state, _json(after), self.settings.qos_state, True))
            event = {
                "ts": after["ts"],
                "before": None if before is None else {k: before[k] for k in ("label", "score")},
                "after": {k: after[k] for k in ("label", "score")},
                "model_version": after["model_version"],
            }
            self._put(Message(self.topics.event, _json(event), self.settings.qos_event, False))

    # paho's network thread.

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._report(f"broker {self.settings.host}:{self.settings.port} refused the connection: {reason}")
            return
        if self.settings.discovery:
            # The second finds configs retained by an earlier run, for entities this model does not have.
            client.subscribe(
                [(f"{self.settings.discovery_prefix}/status", 1), (config_topics_filter(self.settings), 1)]
            )
        with self._cond:
            self._connected = True
            self._generation += 1
            self._drain_first = bool(self._pending)
            self._cond.notify_all()
        self._report("")
        log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
        self._wake()

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        self._report(f"cannot reach broker {self.settings.host}:{self.settings.port}; retrying with backoff")

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._closing:
            self._report(f"disconnected from {self.settings.host}:{self.settings.port} ({reason}); reconnecting")

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
                self._delivered += 1
            else:
                self._early_acks[mid] = None
                while len(self._early_acks) > RECENT_ACKS:
                    self._early_acks.popitem(last=False)
            self._cond.notify_all()

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == f"{self.settings.discovery_prefix}/status":
            if message.payload == ONLINE.encode():
                log.info("mqtt: Home Assistant is online, announcing again")
                with self._cond:
                    self._announce_again = True
                self._wake()
            return
        if message.payload and message.topic not in self._configs(self._model()):
            with self._cond:
                self._stale_configs.add(message.topic)
            self._wake()

    def _model(self) -> ModelInfo | None:
        return self.live_state.model if self.live_state else None

    def _configs(self, model: ModelInfo | None) -> dict[str, bytes]:
        return discovery_configs(self.settings, self.topics, model) if self.settings.discovery else {}

    def _report(self, problem: str) -> None:
        """Log a connection problem once, not on every retry."""
        if problem and problem != self._problem:
            log.warning("mqtt: %s", problem)
        self._problem = problem

    # The worker.

    def _ready(self) -> bool:
        """Whether the next queued message may go out now (called holding ``_cond``)."""
        if not self._connected or self._announced != self._generation or self._announce_again:
            return False
        if self._drain_first:
            if self._pending:
                return False
            self._drain_first = False
        return len(self._pending) < INFLIGHT

    def _work(self) -> None:
        interval, snapshot_interval = self.settings.stats_interval_s, self.settings.snapshot_interval_s
        next_stats = time.monotonic() + interval
        next_snapshot, snapshot_frames = time.monotonic(), 0
        while True:
            with self._cond:
                announce = self._connected and (self._announced != self._generation or self._announce_again)
                generation = self._generation
                self._announce_again = False
                stale, self._stale_configs = self._stale_configs, set()
            if announce:
                self._announce()
                with self._cond:
                    self._announced = generation
            elif self._connected and self.settings.discovery and self._model() != self._announced_model:
                self._announce_entities()  # a reload brought another model: other labels, another name
            for topic in stale:
                log.info("mqtt: removing %s, an entity this model does not have", topic)
                self._send(Message(topic, b"", 1, True), count=False)
            now = time.monotonic()
            if self.live_state is not None and now >= next_stats:
                next_stats = now + interval
                if self._connected:
                    stats = self.live_state.snapshot().stats()
                    self._send(Message(self.topics.stats, _json(stats), self.settings.qos_stats, False), count=False)
            if self.live_state is not None and snapshot_interval > 0 and now >= next_snapshot and self._connected:
                next_snapshot = now + snapshot_interval
                snapshot_frames = self._send_snapshot(snapshot_frames)
            wake = min(next_stats, next_snapshot) if snapshot_interval > 0 else next_stats
            item = self._take(self._ready, timeout=max(0.0, wake - time.monotonic()))
            if item is not None:
                self._send(item)
                continue
            with self._cond:
                if self._finished():
                    return

    def _send_snapshot(self, sent_frames: int) -> int:
        """The latest classified frame with its top-k, as JPEG, when it is newer than the last one sent."""
        assert self.live_state is not None
        frames, result, image = self.live_state.latest()
        if result is None or image is None or frames == sent_frames:
            return sent_frames
        jpeg = encode_jpeg(annotate(image, result.topk, self.settings.snapshot_width), SNAPSHOT_QUALITY)
        self._send(Message(self.topics.snapshot, jpeg, 0, True), count=False)
        return frames

    def _announce(self) -> None:
        """After every (re)connect: online, the discovery configs, the last state we handed over, stats."""
        self._send(Message(self.topics.available, ONLINE.encode(), 1, True), count=False)
        if self.settings.discovery:
            self._announce_entities()
        if self._delivered_state is not None:
            self._send(self._delivered_state, count=False)
        if self.live_state is not None:
            stats = self.live_state.snapshot().stats()
            self._send(Message(self.topics.stats, _json(stats), self.settings.qos_stats, False), count=False)

    def _announce_entities(self) -> None:
        """The discovery configs for the live model; those of entities it no longer has are removed."""
        model = self._model()
        configs = self._configs(model)
        for topic in sorted(self._announced_configs - configs.keys()):
            self._send(Message(topic, b"", 1, True), count=False)
        for topic, payload in configs.items():
            self._send(Message(topic, payload, 1, True), count=False)
        self._announced_model, self._announced_configs = model, set(configs)

    def _send(self, message: Message, count: bool = True) -> None:
        """Hand one message to paho; QoS 0 is delivered once written, QoS 1/2 once acknowledged."""
        try:
            info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        except ValueError as e:  # a payload or topic the protocol cannot carry: a bug or absurd input
            if count:
                self._count(False, str(e))
            return
        if info.rc == paho.MQTT_ERR_NO_CONN and message.qos == 0:
            if count:  # lost the race with a disconnect: keep it for the next connection
                self._requeue(message)
            return
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            if count:
                self._count(False, paho.error_string(info.rc))
            return
        if message.topic == self.topics.state:
            self._delivered_state = message
        if not count:
            return
        with self._cond:
            if message.qos == 0:
                self._delivered += 1
            elif info.mid in self._early_acks:
                del self._early_acks[info.mid]
                self._delivered += 1
            else:
                self._pending.add(info.mid)  # QoS 1/2 without a connection: paho resends it after reconnecting

    def _closed(self) -> None:
        """Wait for outstanding acknowledgements, say ``offline`` (a clean exit sends no Last Will), disconnect."""
        with self._cond:
            self._cond.wait_for(lambda: not self._pending or not self._connected, timeout=2.0)
            lost, connected = len(self._pending), self._connected
            self._dropped += lost
        if lost:
            log.warning("mqtt: %d messages not acknowledged before close", lost)
        if connected:
            info = self._client.publish(self.topics.available, OFFLINE, qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)
        self._client.disconnect()
        self._client.loop_stop()
