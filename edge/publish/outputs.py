"""Every configured output in one place: the service submits each result once and closes them together.

The MQTT sink and the HTTP server are imported only when configured, so a daemon without them never
loads paho-mqtt or prometheus_client (less memory and a faster start on a Pi Zero).
"""

import logging
from types import TracebackType
from typing import IO, TYPE_CHECKING

from edge.publish.base import Sink
from edge.publish.jsonl import JsonlSink
from edge.publish.settings import HttpSettings, MqttSettings, OutputSettings, check
from edge.result import Result
from edge.state import LiveState

if TYPE_CHECKING:
    from edge.collect.api import DatasetApi
    from edge.publish.http import Classify, HttpServer

log = logging.getLogger(__name__)


def check_outputs(output: OutputSettings | None, mqtt: MqttSettings | None, http: HttpSettings | None) -> list[str]:
    """Refuse what ``Outputs`` would refuse (settings, secret files, TLS files) without connecting or
    listening; return what was checked, for ``edgesight check``."""
    from edge.publish.http import read_token
    from edge.publish.mqtt import MqttSink

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
    """The JSON lines sink, the MQTT sink and the HTTP server that the settings ask for, over one live state;
    ``dataset`` serves /api/dataset and the /label page on the HTTP server.

    Settings that are None leave that output off. Everything is checked when constructed (config
    errors exit 78 before anything starts); ``start`` and ``close`` run in the right order.
    """

    def __init__(
        self,
        state: LiveState,
        *,
        output: OutputSettings | None = None,
        mqtt: MqttSettings | None = None,
        http: HttpSettings | None = None,
        classify: "Classify | None" = None,
        dataset: "DatasetApi | None" = None,
        stdout: IO[str] | None = None,
    ) -> None:
        self.state = state
        self.sinks: list[Sink] = []
        if output is not None:
            self.sinks.append(JsonlSink(output, stream=stdout))
        if mqtt is not None:
            from edge.publish.mqtt import MqttSink

            self.sinks.append(MqttSink(mqtt, state))
        for sink in self.sinks:
            state.add_sink(sink)
        self.http = _http_server(http, state, classify, dataset) if http is not None else None

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()
        if self.http is not None:
            self.http.start()

    def submit(self, result: Result) -> None:
        """Hand one result to every sink; returns at once whatever the destinations do."""
        for sink in self.sinks:
            sink.submit(result)

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


def _http_server(
    settings: HttpSettings, state: LiveState, classify: "Classify | None", dataset: "DatasetApi | None"
) -> "HttpServer":
    from edge.publish.http import HttpServer

    return HttpServer(settings, state, classify, dataset)
