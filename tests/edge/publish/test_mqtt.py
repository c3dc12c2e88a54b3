"""The MQTT sink against a real mosquitto: topics and payloads, retained state, Home Assistant discovery,
Last Will, credentials, and a broker outage in the middle of a run."""

import json
import logging
import signal
import subprocess
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edge.config import ResultsConfig
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.mqtt import MqttSink
from edge.publish.settings import MqttSettings
from edge.result import Result
from edge.smoothing import ResultFilter
from edge.state import LiveState, ModelInfo
from tests.helpers import DEADLINE_S, free_port, get_json, render_template, start_daemon, wait_for

pytestmark = pytest.mark.system

DEVICE = "pi-test"
BASE = f"edgesight/{DEVICE}"
RESULT_KEYS = {"ts", "frame", "label", "score", "topk", "latency_ms", "frame_age_ms", "state", "state_changed"}
OUTAGE_RESULTS = 150  # results the daemon classifies and queues while the broker is down (3 s at 50 fps)


def settings(port: int, **kw) -> MqttSettings:
    return MqttSettings(**{"host": "127.0.0.1", "port": port, "device_id": DEVICE, "stats_interval_s": 3600, **kw})


def started(sink: MqttSink) -> MqttSink:
    sink.start()
    wait_for(lambda: sink.connected, what="the sink to connect")
    return sink


def fake_result(n: int, label: str, state_changed: bool = False, latency_ms: float = 1.0) -> Result:
    """A result for tests about the protocol rather than the model."""
    return Result(
        ts=1764061200.0 + n,
        frame=n,
        label=label,
        score=0.9,
        topk=((label, 0.9),),
        latency_ms=latency_ms,
        frame_age_ms=3.0,
        state=label,
        state_changed=state_changed,
    )


@pytest.fixture
def state() -> LiveState:
    live = LiveState(DEVICE)
    live.set_model(ModelInfo("digits", "2026.11.25", sha256="ab" * 32, runtime="ai-edge-litert"))
    return live


def test_messages_queued_without_a_broker_keep_the_newest_up_to_the_bound(mosquitto, recorder_factory, state):
    recorder = recorder_factory([f"{BASE}/result"])
    mosquitto.stop()  # the recorder's session survives the restart; the sink starts while the broker is down
    sink = MqttSink(settings(mosquitto.port, queue_size=10, qos_result=1), state)
    sink.start()
    for n in range(50):
        sink.submit(fake_result(n, "7", state_changed=n == 0))  # 50 results + 1 state + 1 event
    counters = sink.counters()
    assert not sink.connected and (counters.queued, counters.dropped) == (10, 42)
    mosquitto.start()
    received = recorder.wait_for(f"{BASE}/result", 10)
    wait_for(lambda: sink.counters().delivered == 10, what="the queue to drain")
    sink.close(timeout=5)
    assert [m.json()["frame"] for m in recorder.on(f"{BASE}/result")] == list(range(40, 50))
    assert len(received) == 10


def test_discovery_configs_are_retained_and_announced_again_when_home_assistant_comes_online(
    mosquitto, recorder_factory, state
):
    recorder = recorder_factory(["homeassistant/sensor/#", f"{BASE}/available"])
    sink = started(MqttSink(settings(mosquitto.port), state))
    wait_for(lambda: len({m.topic for m in recorder.messages if m.topic.endswith("/config")}) == 6)
    late = recorder_factory(["homeassistant/sensor/#"], client_id="late")
    retained = late.wait_for("homeassistant/sensor/pi-test/label/config")[0]
    assert retained.retain  # a Home Assistant that starts later still finds the device
    by_key = {m.topic.split("/")[3]: m.json() for m in recorder.messages if m.topic.endswith("/config")}
    assert set(by_key) == {"label", "confidence", "fps", "latency", "frame_age", "dropped_frames"}
    for key, config in by_key.items():
        assert config["availability_topic"] == f"{BASE}/available"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["unique_id"] == f"edgesight_{DEVICE}_{key}"
        assert config["device"]["identifiers"] == [f"edgesight_{DEVICE}"]
        assert config["device"]["model"] == "digits 2026.11.25"
    assert by_key["label"]["state_topic"] == f"{BASE}/state" and by_key["confidence"]["state_topic"] == f"{BASE}/result"
    assert by_key["label"]["value_template"] == "{{ value_json.label }}"
    assert by_key["confidence"]["unit_of_measurement"] == "%"
    assert by_key["fps"]["state_topic"] == f"{BASE}/stats" and by_key["fps"]["entity_category"] == "diagnostic"
    assert by_key["latency"]["unit_of_measurement"] == "ms"
    assert recorder.wait_for(f"{BASE}/available")[-1].payload == b"online"

    before = len(recorder.on("homeassistant/sensor/pi-test/label/config"))
    recorder.client.publish("homeassistant/status", "online", qos=1)
    wait_for(lambda: len(recorder.on("homeassistant/sensor/pi-test/label/config")) > before, what="re-announce")
    again = recorder.on("homeassistant/sensor/pi-test/label/config")[-1]
    assert again.json() == by_key["label"]
    sink.close(timeout=5)


def test_clean_close_publishes_offline_retained(mosquitto, recorder_factory, state):
    sink = started(MqttSink(settings(mosquitto.port), state))
    recorder = recorder_factory([f"{BASE}/available"])
    recorder.wait_for(f"{BASE}/available")
    sink.close(timeout=5)
    assert recorder.wait_for(f"{BASE}/available", 2)[-1].payload == b"offline"
    late = recorder_factory([f"{BASE}/available"], client_id="late")
    retained = late.wait_for(f"{BASE}/available")[0]
    assert retained.retain and retained.payload == b"offline"


def test_username_and_password_from_a_file_connect_and_are_never_logged(mosquitto, recorder_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "correct horse"], check=True)
    passwords.chmod(0o600)
    mosquitto.stop()
    mosquitto.extra = f"allow_anonymous false\npassword_file {passwords}\n"
    mosquitto.start()
    (tmp_path / "good").write_text("correct horse\n")
    (tmp_path / "bad").write_text("wrong battery\n")
    rejected = MqttSink(settings(mosquitto.port, username="edge", password_file=str(tmp_path / "bad")))
    rejected.start()
    wait_for(lambda: "refused the connection" in caplog.text, what="the refusal to be logged")
    assert not rejected.connected
    rejected.close(timeout=1)
    accepted = started(MqttSink(settings(mosquitto.port, username="edge", password_file=str(tmp_path / "good"))))
    accepted.close(timeout=5)
    assert "correct horse" not in caplog.text and "wrong battery" not in caplog.text
    assert caplog.text.count("refused the connection") == 1  # logged once, not on every retry


def make_certificates(directory) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl command."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=edgesight test CA")  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip


def test_tls_with_the_brokers_ca_connects(mosquitto, tmp_path):
    make_certificates(tmp_path)
    mosquitto.stop()
    tls = f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\nkeyfile {tmp_path}/server.key\n"
    mosquitto.extra = "allow_anonymous true\n" + tls
    mosquitto.start()
    sink = started(MqttSink(settings(mosquitto.port, tls=True, ca_file=str(tmp_path / "ca.crt"), qos_result=1)))
    sink.submit(fake_result(0, "1"))
    wait_for(lambda: sink.counters().delivered == 1, what="a message acknowledged over TLS")
    sink.close(timeout=5)


def test_a_missing_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(EdgesightError) as error:
        MqttSink(MqttSettings(tls=True, ca_file=str(tmp_path / "absent.crt")))
    assert error.value.exit_code == EXIT_CONFIG and str(error.value).startswith("[mqtt] ca_file")


def test_stats_are_published_periodically(mosquitto, recorder_factory, state):
    recorder = recorder_factory([f"{BASE}/stats"])
    sink = started(MqttSink(settings(mosquitto.port, stats_interval_s=0.2), state))
    state.on_result(fake_result(0, "1", latency_ms=2.0))
    state.on_capture(0.0, captured=5, dropped=4)
    stats = recorder.wait_for(f"{BASE}/stats", 4)
    sink.close(timeout=5)
    last = stats[-1].json()
    assert (last["frames"], last["dropped_frames"], last["latency_ms"], last["frame_age_ms"]) == (1, 4, 2.0, 3.0)


def test_result_interval_thins_results_but_not_state_changes(mosquitto, recorder_factory):
    recorder = recorder_factory([f"{BASE}/result", f"{BASE}/state"])
    sink = started(MqttSink(settings(mosquitto.port, result_interval_s=3600)))
    for n, label in enumerate("1122"):
        sink.submit(fake_result(n, label, state_changed=n in (0, 2)))
    states = recorder.wait_for(f"{BASE}/state", 2)
    sink.close(timeout=5)
    assert [m.json()["frame"] for m in recorder.on(f"{BASE}/result")] == [0]
    assert [m.json()["label"] for m in states] == ["1", "2"] and sink.throttled == 3


@pytest.mark.slow
def test_payloads_of_real_results_state_events_and_stats(mosquitto, recorder_factory, digits_classifier, digit_images):
    state = LiveState(DEVICE)
    manifest = digits_classifier.manifest
    state.set_model(ModelInfo(manifest.name, manifest.version, sha256=manifest.model_sha256, runtime="ai-edge-litert"))
    recorder = recorder_factory([f"{BASE}/#"])
    sink = started(MqttSink(settings(mosquitto.port, qos_result=1), state))
    state.add_sink(sink)
    debounced = ResultFilter(ResultsConfig(debounce=2), manifest.labels)  # the service's own state
    sequence = ["3", "3", "3", "8", "8"]
    for n, label in enumerate(sequence):
        image = cv2.imread(str(digit_images[label][n % 5]))
        c = digits_classifier.classify(image)
        assert c.label == label  # the real model reads these digits right
        decision = debounced.update(c.probabilities)
        result = Result(time.time(), n, c.label, c.score, c.topk, c.latency_ms, 5.0, decision.state, decision.changed)
        state.on_result(result, image)
        sink.submit(result)
    results = [m.json() for m in recorder.wait_for(f"{BASE}/result", 5)]
    assert [r["frame"] for r in results] == list(range(5))
    for r in results:
        assert set(r) == RESULT_KEYS
        assert isinstance(r["score"], float) and 0 <= r["score"] <= 1 and len(r["topk"]) == 3
    states = recorder.wait_for(f"{BASE}/state", 2)
    assert [s.json()["label"] for s in states] == ["3", "8"]  # debounced: 2 in a row before a change
    last_state = states[-1].json()
    assert set(last_state) == {"label", "score", "ts", "model", "model_version"}
    assert (last_state["model"], last_state["model_version"]) == (manifest.name, manifest.version)
    events = [m.json() for m in recorder.wait_for(f"{BASE}/event", 2)]
    assert events[0]["before"] is None and events[0]["after"]["label"] == "3"
    assert events[1]["before"]["label"] == "3" and events[1]["after"]["label"] == "8"
    assert set(events[1]) == {"ts", "before", "after", "model_version"}
    stats = recorder.wait_for(f"{BASE}/stats")[-1].json()  # sent with the announcement on connect
    assert {"fps", "latency_ms", "frame_age_ms", "dropped_frames", "frames", "publish_dropped"} <= set(stats)
    sink.close(timeout=5)
    late = recorder_factory([f"{BASE}/state"], client_id="late")
    retained = late.wait_for(f"{BASE}/state")[0]
    assert retained.retain and retained.json() == last_state


def daemon_config(tmp_path, port: int, bundle, images, http_port: int = 0, **mqtt) -> str:
    """A config for the real daemon: a looping image folder, paced by max_fps, published over MQTT."""
    options = "".join(f"{key} = {value}\n" for key, value in mqtt.items())
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[source]\nuri = "{images}"\nloop = true\nmax_fps = 50\n'
        f'[model]\npath = "{bundle}"\nthreads = 1\n'
        f'[output]\njsonl = ""\n'
        f"[http]\nport = {http_port or free_port()}\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "{DEVICE}"\nkeepalive = 5\n{options}'
    )
    return str(config)


@pytest.mark.slow
def test_last_will_says_offline_when_the_daemon_is_killed(
    mosquitto, recorder_factory, digits_bundle, digits_dir, tmp_path
):
    recorder = recorder_factory([f"{BASE}/available", f"{BASE}/result"])
    daemon = start_daemon(daemon_config(tmp_path, mosquitto.port, digits_bundle, digits_dir / "5"))
    try:
        recorder.wait_for(f"{BASE}/result", 3, timeout=60)
        assert recorder.on(f"{BASE}/available")[-1].payload == b"online"
        assert recorder.on(f"{BASE}/result")[-1].json()["label"] == "5"
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(DEADLINE_S)
        wait_for(lambda: recorder.on(f"{BASE}/available")[-1].payload == b"offline", what="the Last Will")
    finally:
        daemon.kill()
        daemon.wait(DEADLINE_S)
    assert daemon.returncode == -signal.SIGKILL
    late = recorder_factory([f"{BASE}/available"], client_id="late")
    assert late.wait_for(f"{BASE}/available")[0].payload == b"offline"  # the will is retained


@pytest.mark.slow
def test_broker_outage_mid_run_keeps_classifying_and_delivers_the_queue_in_order(
    mosquitto, recorder_factory, digits_bundle, digits_dir, tmp_path
):
    recorder = recorder_factory([f"{BASE}/result", f"{BASE}/available", f"{BASE}/stats"])
    http_port = free_port()
    config = daemon_config(
        tmp_path, mosquitto.port, digits_bundle, digits_dir / "3", http_port,
        qos_result=1, queue_size=2000, reconnect_min_s=1, reconnect_max_s=2, stats_interval_s=0.5,
    )  # fmt: skip
    daemon = start_daemon(config)
    try:
        recorder.wait_for(f"{BASE}/result", 20, timeout=60)
        mosquitto.stop()
        last_before = recorder.on(f"{BASE}/result")[-1].json()["frame"]

        def queued_offline() -> bool:
            mqtt = get_json(f"http://127.0.0.1:{http_port}/api/status")["sinks"]["mqtt"]
            return not mqtt["connected"] and mqtt["queued"] >= OUTAGE_RESULTS

        # Seconds without a broker: the daemon notices, and keeps classifying into its queue meanwhile.
        wait_for(queued_offline, timeout=60, what=f"{OUTAGE_RESULTS} results queued while the broker is down")
        mosquitto.start()
        # Frames classified during the outage arrive after the reconnect, then new ones follow.
        wait_for(
            lambda: recorder.on(f"{BASE}/result")[-1].json()["frame"] > last_before + OUTAGE_RESULTS + 50,
            timeout=60,
            what="results from after the outage",
        )
        stats = recorder.on(f"{BASE}/stats")[-1].json()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(DEADLINE_S)
    finally:
        daemon.kill()
        daemon.wait(DEADLINE_S)
    assert daemon.returncode == 0, daemon.stderr.read()
    frames = [m.json()["frame"] for m in recorder.on(f"{BASE}/result")]
    first_seen = list(dict.fromkeys(frames))  # QoS 1 may repeat a message across the reconnect, never reorder
    assert first_seen == list(range(first_seen[0], first_seen[-1] + 1))  # none lost, none out of order
    assert first_seen[-1] > last_before + OUTAGE_RESULTS  # classifying went on through the outage
    assert stats["publish_dropped"] == 0 and stats["frames"] > last_before
    assert [m.payload for m in recorder.on(f"{BASE}/available")][-1] == b"offline"  # clean stop
    availability = [m.payload for m in recorder.on(f"{BASE}/available")]
    assert availability[0] == b"online" and b"online" in availability[1:-1]  # announced again after the outage


def configs(recorder, component: str) -> dict[str, dict]:
    """The latest discovery config of each entity of ``component``, by object id; removed ones left out."""
    latest = {m.topic.split("/")[3]: m.payload for m in recorder.messages if m.topic.split("/")[1] == component}
    return {key: json.loads(payload) for key, payload in latest.items() if payload}


def scored(n: int, label: str, score: float, state_changed: bool = False) -> Result:
    return replace(fake_result(n, label, state_changed), score=score, topk=((label, score), ("x", 1 - score)))


def test_confidence_follows_every_published_result_not_only_label_changes(mosquitto, recorder_factory, state):
    recorder = recorder_factory(["homeassistant/sensor/#", f"{BASE}/result"])
    sink = started(MqttSink(settings(mosquitto.port), state))
    confidence = wait_for(lambda: configs(recorder, "sensor").get("confidence"), what="the confidence sensor")
    for n, score in enumerate((0.61, 0.74, 0.93)):  # the state stays "7" throughout
        sink.submit(scored(n, "7", score, state_changed=n == 0))
    published = recorder.wait_for(f"{BASE}/result", 3)
    sink.close(timeout=5)
    assert confidence["state_topic"] == f"{BASE}/result"
    assert [render_template(confidence["value_template"], m.payload) for m in published] == ["61.0", "74.0", "93.0"]


def test_confidence_is_the_smoothed_score_when_smoothing_is_on(state):
    from edge.publish.homeassistant import CONFIDENCE
    from edge.result import Smoothed

    result = replace(scored(0, "7", 0.5), smoothed=Smoothed("7", 0.8))
    assert render_template(CONFIDENCE, result.encoded) == "80.0"


def test_stats_before_anything_was_measured_are_null_not_zero(mosquitto, recorder_factory, state):
    """A dip to zero in Home Assistant's history after every start: unknown until measured instead."""
    recorder = recorder_factory(["homeassistant/sensor/#", f"{BASE}/stats"])
    sink = started(MqttSink(settings(mosquitto.port, stats_interval_s=0.2), state))
    first = recorder.wait_for(f"{BASE}/stats")[0]
    fps = wait_for(lambda: configs(recorder, "sensor").get("fps"), what="the fps sensor")
    assert {k: first.json()[k] for k in ("fps", "latency_ms", "frame_age_ms")} == dict.fromkeys(
        ("fps", "latency_ms", "frame_age_ms")
    )
    assert render_template(fps["value_template"], first.payload) == "None"  # Home Assistant's "unknown"
    for n in range(3):
        state.on_result(fake_result(n, "1", latency_ms=2.0))
    measured = wait_for(lambda: [m.json() for m in recorder.on(f"{BASE}/stats") if m.json()["frames"] == 3])[-1]
    sink.close(timeout=5)
    assert measured["latency_ms"] == 2.0 and measured["frame_age_ms"] == 3.0 and measured["fps"] > 0


def test_a_binary_sensor_per_class_is_on_only_while_that_class_is_the_state(mosquitto, recorder_factory, state):
    labels = ("cat", "dog", 'bird\'s "nest"')
    state.set_model(ModelInfo("pets", "1", labels=labels))
    recorder = recorder_factory(["homeassistant/binary_sensor/#", f"{BASE}/state"])
    sink = started(MqttSink(settings(mosquitto.port), state))
    sensors = wait_for(lambda: len(configs(recorder, "binary_sensor")) == 3 and configs(recorder, "binary_sensor"))
    assert {c["name"] for c in sensors.values()} == set(labels)
    assert all(c["state_topic"] == f"{BASE}/state" and c["availability_topic"] == f"{BASE}/available"
               for c in sensors.values())  # fmt: skip
    for n, label in enumerate(labels):
        sink.submit(fake_result(n, label, state_changed=True))
        message = recorder.wait_for(f"{BASE}/state", n + 1)[-1]
        on = {c["name"] for c in sensors.values() if render_template(c["value_template"], message.payload) == "ON"}
        assert on == {label}
    # A reload brings a model with other classes: the sensors of the classes it lacks are removed.
    state.set_model(ModelInfo("pets", "2", labels=("cat", "hamster")))
    sink.submit(fake_result(9, "cat", state_changed=True))
    wait_for(lambda: {c["name"] for c in configs(recorder, "binary_sensor").values()} == {"cat", "hamster"},
             what="the sensors of the new model's classes only")  # fmt: skip
    sink.close(timeout=5)


def test_configs_left_by_an_earlier_run_for_classes_the_model_lacks_are_removed(mosquitto, recorder_factory, state):
    state.set_model(ModelInfo("pets", "1", labels=("cat", "dog")))
    started(MqttSink(settings(mosquitto.port), state)).close(timeout=5)
    state.set_model(ModelInfo("pets", "2", labels=("cat",)))  # the daemon restarts with another model
    sink = started(MqttSink(settings(mosquitto.port), state))
    watcher = recorder_factory(["homeassistant/#"], client_id="watcher")
    wait_for(lambda: set(configs(watcher, "binary_sensor")) == {"class_cat"}, what="class_dog to be removed")
    sink.close(timeout=5)
    retained = recorder_factory(["homeassistant/#"], client_id="later")
    wait_for(lambda: "class_cat" in configs(retained, "binary_sensor"), what="the retained configs")
    assert set(configs(retained, "binary_sensor")) == {"class_cat"}


def test_the_snapshot_is_a_camera_whose_image_is_throttled_by_snapshot_interval(mosquitto, recorder_factory, state):
    recorder = recorder_factory(["homeassistant/camera/#", f"{BASE}/snapshot"])
    sink = started(MqttSink(settings(mosquitto.port, snapshot_interval_s=0.5, snapshot_width=320), state))
    camera = wait_for(lambda: configs(recorder, "camera").get("snapshot"), what="the camera's config")
    assert camera["topic"] == f"{BASE}/snapshot" and camera["availability_topic"] == f"{BASE}/available"
    frame = np.full((240, 320, 3), 90, np.uint8)
    began, fed = time.monotonic(), 0
    while len(recorder.on(f"{BASE}/snapshot")) < 3:
        state.on_result(scored(fed, "7", 0.9), frame)  # a result every 10 ms: 50 for each snapshot
        fed += 1
        assert time.monotonic() - began < DEADLINE_S, "no snapshots"
        time.sleep(0.01)
    elapsed = time.monotonic() - began
    sink.close(timeout=5)
    snapshots = recorder.on(f"{BASE}/snapshot")
    assert len(snapshots) <= elapsed / 0.5 + 2 and fed > 3 * len(snapshots)
    image = cv2.imdecode(np.frombuffer(snapshots[-1].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3) and image[:20].mean() != 90  # scaled to snapshot_width, top-k drawn
