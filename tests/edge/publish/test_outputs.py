"""All outputs together, as the service will drive them: one submit reaches every sink; close drains them."""

import io
import json
import subprocess
import sys
import urllib.request

import pytest

from edge.publish.outputs import Outputs
from edge.publish.settings import HttpSettings, MqttSettings, OutputSettings
from edge.publish.telemetry import Telemetry
from tests.helpers import wait_for


@pytest.mark.system
def test_one_submit_reaches_jsonl_and_mqtt_and_close_drains_them(mosquitto, recorder_factory):
    recorder = recorder_factory(["edgesight/dev/result"])
    telemetry = Telemetry("dev")
    stdout = io.StringIO()
    outputs = Outputs(
        telemetry,
        output=OutputSettings(jsonl="-"),
        mqtt=MqttSettings(host="127.0.0.1", port=mosquitto.port, device_id="dev", qos_result=1),
        http=HttpSettings(port=0),
        stdout=stdout,
    )
    with outputs:
        wait_for(lambda: outputs.sinks[1].connected, what="mqtt to connect")
        for n in range(5):
            record = {"ts": 1.0 + n, "frame": n, "label": "a", "score": 1.0, "topk": [["a", 1.0]]}
            telemetry.on_result(None, record, 1.0, 1.0)
            outputs.submit(record)
        assert outputs.http is not None
        with urllib.request.urlopen(outputs.http.url + "/api/status", timeout=10) as response:
            sinks = json.load(response)["sinks"]
        assert set(sinks) == {"jsonl", "mqtt"}
    assert [json.loads(line)["frame"] for line in stdout.getvalue().splitlines()] == list(range(5))
    assert [m.json()["frame"] for m in recorder.wait_for("edgesight/dev/result", 5)] == list(range(5))


def test_importing_the_publishing_side_does_not_import_tensorflow():
    modules = "edge.publish.outputs, edge.publish.mqtt, edge.publish.http, edge.publish.telemetry"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert {"paho", "prometheus_client", "cv2"} <= imported
    assert not imported & {"tensorflow", "keras", "tf_keras"}
