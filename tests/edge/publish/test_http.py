"""The HTTP server on 127.0.0.1 with results from the real digits model: health, API, metrics, snapshot,
classification of uploads, the bearer token, and the page in headless Chromium."""

import errno
import json
import logging
import os
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.postprocess import Classification
from edge.publish.http import HttpServer
from edge.publish.jsonl import JsonlSink
from edge.publish.settings import HttpSettings, OutputSettings
from edge.result import Result
from edge.state import LiveState, ModelInfo
from tests.helpers import png_claiming, wait_for


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except HTTPError as e:
        return e.code, dict(e.headers), e.read()


def png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def never(_image: np.ndarray) -> Classification:
    pytest.fail("a refused upload reached the model")


def fake_result(label: str, frame: int = 0) -> Result:
    return Result(
        ts=1764061200.0, frame=frame, label=label, score=0.75, topk=((label, 0.75), ("x", 0.25)), latency_ms=1.0,
        frame_age_ms=1.0,
    )  # fmt: skip


@pytest.fixture
def live(digits_classifier, digit_images):
    """A live state fed with real classifications of a few digits, and the server over it."""
    state = LiveState("pi-test")
    manifest = digits_classifier.manifest
    state.set_model(
        ModelInfo(
            manifest.name, manifest.version, sha256=manifest.model_sha256, runtime="ai-edge-litert",
            labels=manifest.labels,
        )
    )  # fmt: skip
    state.set_source("digits")
    state.set_source_state("open")
    server = HttpServer(HttpSettings(port=0), state, classify=digits_classifier.classify)
    server.start()

    def feed(label: str, n: int = 1) -> Result:
        for i in range(n):
            image = cv2.imread(str(digit_images[label][i % 5]))
            c = digits_classifier.classify(image)
            result = Result(time.time(), i, c.label, c.score, c.topk, c.latency_ms, frame_age_ms=12.0)
            state.on_result(result, image)
        return result

    yield server, state, feed
    server.close()


def test_healthz_follows_model_source_and_frames():
    state = LiveState("pi-test")
    server = HttpServer(HttpSettings(port=0, stale_after_s=60), state)
    server.start()
    try:
        status, _, body = request(server.url + "/healthz")
        assert status == 503 and json.loads(body) == {"status": "unhealthy", "reason": "no model loaded"}
        state.set_model(ModelInfo("digits", "1"))
        state.set_source_state("open")
        assert json.loads(request(server.url + "/healthz")[2])["reason"] == "no frame classified yet"
        state.on_result(fake_result("1"))
        assert request(server.url + "/healthz")[:1] == (200,)
        state.set_source_state("reconnecting", "camera unplugged")
        status, _, body = request(server.url + "/healthz")
        assert status == 503 and json.loads(body)["reason"] == "source: reconnecting: camera unplugged"
    finally:
        server.close()


def test_snapshot_draws_on_a_copy_and_is_encoded_once_per_frame():
    state = LiveState()
    server = HttpServer(HttpSettings(port=0, snapshot_width=320, snapshot_quality=80), state)
    try:
        assert server.snapshot_jpeg() is None
        frame = np.full((48, 64, 3), 200, np.uint8)
        state.on_result(fake_result("cat"), frame)
        first = server.snapshot_jpeg()
        assert first is not None and server.snapshot_jpeg() is first  # cached until the next frame
        assert (frame == 200).all()  # the service's frame is not drawn on
        image = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        assert image[5:40, 170:300].mean() < 200  # the top-k panel and bar are drawn at the top
        state.on_result(fake_result("dog", 1), frame)
        assert server.snapshot_jpeg() != first
    finally:
        server.close()


@pytest.mark.slow
def test_api_result_and_status_show_the_latest_real_result(live):
    server, _, feed = live
    assert request(server.url + "/api/result")[0] == 404  # nothing classified yet
    result = feed("4", 3)
    status, headers, body = request(server.url + "/api/result")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == result.to_json() and result.label == "4"
    document = json.loads(request(server.url + "/api/status")[2])
    assert document["model"]["name"] == "digits" and document["model"]["labels"] == [str(d) for d in range(10)]
    assert document["counters"] == {"frames": 3, "dropped_frames": 0}
    assert document["health"] == {"ok": True, "reason": "ok"} and document["source"]["ok"] is True
    assert document["frame_age_ms"]["mean"] == 12.0 and document["uptime_s"] >= 0


@pytest.mark.slow
def test_metrics_parse_with_prometheus_parser(live, tmp_path):
    server, state, feed = live
    sink = JsonlSink(OutputSettings(jsonl=str(tmp_path / "r.jsonl")))
    state.add_sink(sink)
    sink.start()
    feed("2", 4)
    sink.submit(fake_result("2"))
    state.on_capture(0.0, captured=6, dropped=2)
    wait_for(lambda: sink.counters().delivered == 1, what="the jsonl sink")
    status, headers, body = request(server.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("edgesight_frames_total", ())] == 4
    assert samples[("edgesight_frames_dropped_total", ())] == 2
    assert samples[("edgesight_inference_latency_seconds_count", ())] == 4
    assert samples[("edgesight_frame_age_seconds_bucket", (("le", "0.025"),))] == 4  # 12 ms frames
    assert samples[("edgesight_frame_age_seconds_bucket", (("le", "0.01"),))] == 0
    assert samples[("edgesight_fps", ())] > 0 and samples[("edgesight_source_up", ())] == 1
    info = next(k for k in samples if k[0] == "edgesight_model_info")
    assert dict(info[1])["name"] == "digits" and dict(info[1])["runtime"] == "ai-edge-litert"
    assert samples[("edgesight_publish_delivered_total", (("sink", "jsonl"),))] == 1
    assert samples[("edgesight_publish_queue_depth", (("sink", "jsonl"),))] == 0
    assert ("edgesight_publish_failures_total", (("sink", "jsonl"),)) in samples
    sink.close()


@pytest.mark.slow
def test_snapshot_is_the_latest_frame_as_a_jpeg_at_the_configured_width(live):
    server, _, feed = live
    assert request(server.url + "/snapshot.jpg")[0] == 404
    feed("9")
    status, headers, body = request(server.url + "/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 640 and image.shape[0] == 640  # the square digit, enlarged


@pytest.mark.slow
def test_post_classify_answers_like_the_classify_command(live, digits_classifier, digit_images):
    server, _, _ = live
    image = cv2.imread(str(digit_images["6"][0]))
    status, _, body = request(server.url + "/api/classify", png_bytes(image), {"Content-Type": "image/png"})
    assert status == 200
    answer = json.loads(body)
    expected = digits_classifier.classify(image).to_json()
    assert set(answer) == {"label", "score", "topk", "latency_ms"} and answer["label"] == "6"
    assert answer["topk"] == expected["topk"]
    _, jpeg = cv2.imencode(".jpg", cv2.resize(image, (256, 256), interpolation=cv2.INTER_NEAREST))
    status, _, body = request(server.url + "/api/classify", jpeg.tobytes(), {"Content-Type": "image/jpeg"})
    assert status == 200 and json.loads(body)["label"] == "6"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"hello, not an image", "image/png", 415, "not a JPEG or PNG"),
        (png_bytes(np.zeros((8, 8, 3), np.uint8)), "image/jpeg", 415, "is a PNG but is sent as image/jpeg"),
        (png_bytes(np.zeros((8, 8, 3), np.uint8)), "text/plain", 415, "not image/jpeg or image/png"),
        (png_claiming(100_000, 100_000), "image/png", 413, "the limit is 12000000 pixels"),
        (png_claiming(64, 64), "image/png", 422, "cannot be decoded"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 10_000, "image/png", 422, "no usable image size"),
    ],
    ids=["text", "mislabelled", "wrong-type", "bomb", "truncated", "no-header"],
)
def test_bad_uploads_are_refused_before_the_model(body, content_type, status, fragment):
    server = HttpServer(HttpSettings(port=0), LiveState(), classify=never)
    server.start()
    try:
        code, _, answer = request(server.url + "/api/classify", body, {"Content-Type": content_type})
        assert code == status and fragment in json.loads(answer)["error"]
        big = HttpServer(HttpSettings(port=0, max_upload_bytes=100), LiveState(), classify=never)
    finally:
        server.close()
    big.start()
    try:
        code, _, answer = request(
            big.url + "/api/classify", b"\xff\xd8\xff" + b"\0" * 200, {"Content-Type": "image/jpeg"}
        )
        assert code == 413 and "the limit is 100" in json.loads(answer)["error"]
    finally:
        big.close()


def test_bearer_token_guards_data_but_not_the_page_or_healthz(tmp_path, monkeypatch):
    (tmp_path / "http_token").write_text("s3cret-token\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    server = HttpServer(HttpSettings(port=0), LiveState(), classify=never)
    server.start()
    try:
        status, headers, _ = request(server.url + "/api/status")
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert request(server.url + "/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(server.url + "/api/status", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        assert request(server.url + "/api/classify", b"x", {})[0] == 401  # refused before reading the body
        assert request(server.url + "/healthz")[0] == 503 and request(server.url + "/")[0] == 200
    finally:
        server.close()


@pytest.mark.slow
def test_a_port_in_use_is_a_config_error(live):
    server, state, _ = live
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(EdgesightError) as error:
        HttpServer(HttpSettings(port=port), state)
    assert error.value.exit_code == EXIT_CONFIG and f"127.0.0.1:{port}" in str(error.value)


def test_a_port_the_sandbox_forbids_names_the_fix(monkeypatch):
    """Where systemd enforces the unit's SocketBindAllow=, bind() fails with EPERM for any other port."""

    def forbidden(server):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(socketserver.TCPServer, "server_bind", forbidden)
    with pytest.raises(EdgesightError) as error:
        HttpServer(HttpSettings(port=9000), LiveState())
    assert error.value.exit_code == EXIT_CONFIG
    assert "127.0.0.1:9000 (Operation not permitted)" in str(error.value) and "sudo make install" in str(error.value)


def chromium(*args: str, user_data: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={user_data}", "--virtual-time-budget=5000", "--window-size=1100,700",
    ]  # fmt: skip
    env = {**os.environ, "HOME": user_data}
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
@pytest.mark.system
def test_page_in_headless_chromium_shows_the_current_label_and_top_k(live, tmp_path):
    server, _, feed = live
    result = feed("7", 3)
    assert result.label == "7"
    dom = chromium("--dump-dom", server.url + "/", user_data=str(tmp_path / "profile-dom"))
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<div id="label">7</div>' in dom.stdout
    assert dom.stdout.count('class="bar"') == 3  # the top-k as bars
    assert "digits" in dom.stdout and ">healthy<" in dom.stdout
    screenshot = tmp_path / "page.png"
    shot = chromium(f"--screenshot={screenshot}", server.url + "/", user_data=str(tmp_path / "profile-shot"))
    assert shot.returncode == 0 and screenshot.stat().st_size > 5000, shot.stderr[-2000:]
    image = cv2.imread(str(screenshot))
    assert image.shape[:2] == (700, 1100) and image.std() > 10  # a rendered page, not a blank one


def test_a_client_that_drops_its_connection_costs_one_debug_line_not_a_traceback(capfd, caplog):
    server = HttpServer(HttpSettings(port=0), LiveState(), classify=never)
    server.start()
    host, port = server.url.removeprefix("http://").split(":")
    try:
        with caplog.at_level(logging.DEBUG, logger="edge.publish"):
            for _ in range(20):
                # Half an upload, then a reset (SO_LINGER 0): the server is cut off mid-read.
                client = socket.create_connection((host, int(port)), timeout=5)
                client.sendall(b"POST /api/classify HTTP/1.0\r\nContent-Length: 100000\r\n\r\n" + b"\xff" * 1000)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            wait_for(lambda: len([r for r in caplog.records if "went away" in r.message]) == 20, what="20 lines")
        assert request(server.url + "/healthz")[0] == 503  # still serving
    finally:
        server.close()
    went_away = [r for r in caplog.records if "went away" in r.message]
    assert all(r.levelno == logging.DEBUG for r in went_away)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in capfd.readouterr().err


def post_at_once(url: str, body: bytes, clients: int) -> list[tuple[int, dict] | Exception]:
    """``clients`` POSTs started together; each answer's status and headers, or the error it met."""
    start = threading.Barrier(clients)

    def post(_: int) -> tuple[int, dict] | Exception:
        start.wait()
        try:
            status, headers, _ = request(url, body, {"Content-Type": "image/png"})
        except OSError as e:  # a reset, a refused or timed-out connection
            return e
        return status, headers

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(post, range(clients)))


@pytest.mark.slow
def test_a_burst_of_200_uploads_gets_answers_not_resets(digits_classifier, digit_images):
    lock = threading.Lock()

    def classify(image: np.ndarray) -> Classification:
        with lock:
            return digits_classifier.classify(image)

    server = HttpServer(HttpSettings(port=0), LiveState(), classify=classify)
    server.start()
    try:
        answers = post_at_once(server.url + "/api/classify", png_bytes(cv2.imread(str(digit_images["3"][0]))), 200)
    finally:
        server.close()
    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, f"{len(errors)} connections failed, e.g. {errors[0]!r}"
    assert {status for status, _ in answers} <= {200, 503}


@pytest.mark.slow
def test_when_every_handler_is_busy_the_server_answers_503_with_retry_after(digit_images):
    release = threading.Event()

    def stuck(_image: np.ndarray) -> Classification:
        release.wait(30)  # a model call that takes long: every handler thread ends up waiting here
        return Classification("slow", 1.0, (("slow", 1.0),), 1.0)

    server = HttpServer(HttpSettings(port=0), LiveState(), classify=stuck)
    server.start()
    body = png_bytes(cv2.imread(str(digit_images["3"][0])))
    try:
        with ThreadPoolExecutor(1) as pool:
            burst = pool.submit(post_at_once, server.url + "/api/classify", body, 150)
            wait_for(lambda: server._server.refused > 0, what="the first refusal")
            release.set()
            answers = burst.result(timeout=120)
        metrics = request(server.url + "/metrics")[2].decode()
    finally:
        release.set()
        server.close()
    assert not [a for a in answers if isinstance(a, Exception)]
    refused = [headers for status, headers in answers if status == 503]
    assert refused and all(headers["Retry-After"] == "1" for headers in refused)
    assert len(refused) + sum(status == 200 for status, _ in answers) == 150
    assert f"edgesight_http_refused_total {float(len(refused))}" in metrics


def test_favicon_is_served_and_the_page_links_it():
    server = HttpServer(HttpSettings(port=0), LiveState())
    server.start()
    try:
        status, headers, icon = request(server.url + "/favicon.ico")
        page = request(server.url + "/")[2].decode()
    finally:
        server.close()
    assert status == 200 and headers["Content-Type"] == "image/x-icon"
    reserved, kind, count = struct.unpack_from("<HHH", icon)
    assert (reserved, kind, count) == (0, 1, 1)
    png = icon[struct.unpack_from("<I", icon, 18)[0] :]
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape == (32, 32, 4)
    assert '<link rel="icon" href="favicon.ico">' in page
