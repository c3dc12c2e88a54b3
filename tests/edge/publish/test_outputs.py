"""All outputs together, as the service will drive them: one submit reaches every sink; close drains them."""

import io
import json
import subprocess
import sys
import urllib.request

import pytest

from edge.publish.outputs import Outputs
from edge.publish.settings import HttpSettings, MqttSettings, OutputSettings
from edge.result import Result
from edge.state import LiveState
from tests.helpers import wait_for


@pytest.mark.system
def test_one_submit_reaches_jsonl_and_mqtt_and_close_drains_them(mosquitto, recorder_factory):
    recorder = recorder_factory(["edgesight/dev/result"])
    state = LiveState("dev")
    stdout = io.StringIO()
    outputs = Outputs(
        state,
        output=OutputSettings(jsonl="-"),
        mqtt=MqttSettings(host="127.0.0.1", port=mosquitto.port, device_id="dev", qos_result=1),
        http=HttpSettings(port=0),
        stdout=stdout,
    )
    with outputs:
        wait_for(lambda: outputs.sinks[1].connected, what="mqtt to connect")
        for n in range(5):
            result = Result(1.0 + n, n, "a", 1.0, (("a", 1.0),), latency_ms=1.0, frame_age_ms=1.0)
            state.on_result(result)
            outputs.submit(result)
        assert outputs.http is not None
        with urllib.request.urlopen(outputs.http.url + "/api/status", timeout=10) as response:
            sinks = json.load(response)["sinks"]
        assert set(sinks) == {"jsonl", "mqtt"}
    assert [json.loads(line)["frame"] for line in stdout.getvalue().splitlines()] == list(range(5))
    assert [m.json()["frame"] for m in recorder.wait_for("edgesight/dev/result", 5)] == list(range(5))


def imported_by(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter imports to run ``statement``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}


def test_importing_the_publishing_side_does_not_import_tensorflow():
    imported = imported_by("import edge.publish.outputs, edge.publish.mqtt, edge.publish.http")
    assert {"paho", "prometheus_client", "cv2"} <= imported
    assert not imported & {"tensorflow", "keras", "tf_keras"}


def test_paho_and_prometheus_client_are_imported_only_for_their_outputs(tmp_path):
    make = (
        "from edge.publish.outputs import Outputs; from edge.publish.settings import *;"
        " from edge.state import LiveState; Outputs(LiveState(), {})"
    )
    jsonl_only = imported_by(make.format(f"output=OutputSettings(jsonl={str(tmp_path / 'r.jsonl')!r})"))
    assert "edge" in jsonl_only and not jsonl_only & {"paho", "prometheus_client"}
    assert "paho" in imported_by(make.format("mqtt=MqttSettings()"))
    with_http = imported_by(make.format("http=HttpSettings(port=0)"))
    assert "prometheus_client" in with_http and "paho" not in with_http
