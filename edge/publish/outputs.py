"""Every configured output in one place: the service submits each result once and closes them together."""

import logging
from types import TracebackType
from typing import IO, Any

from edge.publish.base import Sink
from edge.publish.http import Classify, HttpServer, read_token
from edge.publish.jsonl import JsonlSink
from edge.publish.mqtt import MqttSink
from edge.publish.settings import HttpSettings, MqttSettings, OutputSettings, check
from edge.publish.telemetry import Telemetry

log = logging.getLogger(__name__)


def check_outputs(output: OutputSettings | None, mqtt: MqttSettings | None, http: HttpSettings | None) -> list[str]:
    """Refuse what ``Outputs`` would refuse (settings, secret files, TLS files) without connecting or
    listening; return what was checked, for ``edgesight check``."""
    checked = []
    if output is not None:
        check(output, "output")
        checked.append("jsonl " + ("stdout" if output.jsonl == "-" else output.jsonl))
    if mqtt is not None:
        MqttSink(mqtt)  # reads the password and the TLS files as the daemon does; connects only on start
        checked.append(f"mqtt {mqtt.host}:{mqtt.port}")
    if http is not None:
        check(http, "http")
        token = read_token(http)
        checked.append(f"http {http.host}:{http.port}" + (" with a token" if token else ""))
    return checked


class Outputs:
    """The JSON lines sink, the MQTT sink and the HTTP server that the settings ask for, over one telemetry.

    Settings that are None leave that output off. Everything is checked when constructed (config
    errors exit 78 before anything starts); ``start`` and ``close`` run in the right order.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        output: OutputSettings | None = None,
        mqtt: MqttSettings | None = None,
        http: HttpSettings | None = None,
        classify: Classify | None = None,
        stdout: IO[str] | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.sinks: list[Sink] = []
        if output is not None:
            self.sinks.append(JsonlSink(output, stream=stdout))
        if mqtt is not None:
            self.sinks.append(MqttSink(mqtt, telemetry))
        for sink in self.sinks:
            telemetry.add_sink(sink)
        self.http = HttpServer(http, telemetry, classify) if http is not None else None

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()
        if self.http is not None:
            self.http.start()

    def submit(self, record: dict[str, Any]) -> None:
        """Hand one result to every sink; returns at once whatever the destinations do."""
        for sink in self.sinks:
            sink.submit(record)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, then give each sink up to ``timeout`` seconds to deliver what it holds."""
        if self.http is not None:
            self.http.close()
        for sink in self.sinks:
            sink.close(timeout)
            counters = sink.counters()
            log.info(
                "%s: %d delivered, %d dropped, %d failed",
                sink.name,
                counters.delivered,
                counters.dropped,
                counters.failed,
            )

    def __enter__(self) -> "Outputs":
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
