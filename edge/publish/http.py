"""The HTTP server: a live page, JSON API, Prometheus metrics, snapshots and classification of uploads.

Standard library only (``ThreadingHTTPServer``), so it fits a Pi Zero 2 W. Bound to 127.0.0.1 by
default; with a bearer token every endpoint except ``/`` (a static page that asks for the token) and
``/healthz`` (for probes) requires ``Authorization: Bearer <token>``.
"""

import hmac
import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import numpy as np

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.postprocess import Classification
from edge.publish.metrics import exposition, registry_for
from edge.publish.secrets import read_secret
from edge.publish.settings import HttpSettings, check
from edge.publish.snapshot import annotate, encode_jpeg
from edge.publish.upload import UploadError, check_upload
from edge.state import LiveState

log = logging.getLogger(__name__)

Classify = Callable[[np.ndarray], Classification]
READ_TIMEOUT_S = 10  # a client that stalls mid-request loses its connection, not a thread forever


class HttpServer:
    """Serves the live ``state`` over HTTP from its own threads; ``classify`` answers ``POST /api/classify``.

    ``classify`` is called from request threads, one call at a time: give it a classifier that
    the daemon loop does not use concurrently, or one guarded by the daemon's own lock. It applies
    the daemon's ``[results] threshold``, so an upload is labelled as a frame would be.
    """

    def __init__(self, settings: HttpSettings, state: LiveState, classify: Classify | None = None) -> None:
        check(settings, "http")
        self.settings = settings
        self.state = state
        self.registry = registry_for(state)
        self.classify = classify
        self.classify_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._snapshot: tuple[int, bytes] | None = None  # frames classified when encoded, the JPEG
        self.token = read_secret(settings.token_file, "http_token", "[http] token_file")
        self.page = resources.files("edge.publish").joinpath("page.html").read_bytes()
        try:
            self._server = ThreadingHTTPServer((settings.host, settings.port), _handler(self))
        except OSError as e:
            raise EdgesightError(
                f"[http] host/port: cannot listen on {settings.host}:{settings.port} ({e.strerror});"
                " pick another port or stop what uses it",
                EXIT_CONFIG,
            ) from e
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()
        log.info("http: serving %s%s", self.url, " (bearer token required)" if self.token else "")

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def snapshot_jpeg(self) -> bytes | None:
        """The latest frame with its top-k drawn on it; encoded once per frame, outside the state's lock."""
        frames, result, image = self.state.latest()
        if result is None or image is None:
            return None
        with self._snapshot_lock:
            if self._snapshot is None or self._snapshot[0] != frames:
                annotated = annotate(image, result.topk, self.settings.snapshot_width)
                self._snapshot = frames, encode_jpeg(annotated, self.settings.snapshot_quality)
            return self._snapshot[1]

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())


def _handler(app: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgesight"
        timeout = READ_TIMEOUT_S

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: %s %s", self.address_string(), format % args)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, app.page, "text/html; charset=utf-8")
            if path == "/healthz":
                health = app.state.snapshot().health(app.settings.stale_after_s)
                status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
                return self._json(status, {"status": "ok" if health.ok else "unhealthy", "reason": health.reason})
            routes = {
                "/api/status": self._status,
                "/api/result": self._result,
                "/metrics": self._metrics,
                "/snapshot.jpg": self._snapshot,
            }
            if path not in routes:
                return self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            if self._authorized():
                routes[path]()
            return None

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/api/classify":
                return self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            if self._authorized():
                self._classify()
            return None

        def _status(self) -> None:
            self._json(HTTPStatus.OK, app.state.snapshot().status(app.settings.stale_after_s))

        def _result(self) -> None:
            _, result, _ = app.state.latest()
            if result is None:
                return self._error(HTTPStatus.NOT_FOUND, "no frame classified yet")
            return self._send(HTTPStatus.OK, result.encoded, "application/json")

        def _metrics(self) -> None:
            self._send(HTTPStatus.OK, *exposition(app.registry))

        def _snapshot(self) -> None:
            jpeg = app.snapshot_jpeg()
            if jpeg is None:
                return self._error(HTTPStatus.NOT_FOUND, "no frame classified yet")
            return self._send(HTTPStatus.OK, jpeg, "image/jpeg")

        def _classify(self) -> None:
            if app.classify is None:
                return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded to classify with")
            length = self.headers.get("Content-Length")
            try:
                size = int(length) if length is not None else -1
            except ValueError:
                size = -1
            if size < 0:
                return self._error(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length header")
            if size > app.settings.max_upload_bytes:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                return self._error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the image has {size} bytes; the limit is {app.settings.max_upload_bytes}",
                )
            body = self.rfile.read(size)
            try:
                image = check_upload(body, self.headers.get("Content-Type", ""), app.settings.max_upload_pixels)
            except UploadError as e:
                return self._error(e.status, str(e))
            try:
                with app.classify_lock:
                    classification = app.classify(image)
            except EdgesightError as e:  # the model could not take it: the client learns why, the server goes on
                return self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(e))
            return self._json(HTTPStatus.OK, classification.to_json())

        def _authorized(self) -> bool:
            if app.authorized(self.headers.get("Authorization")):
                return True
            self._error(HTTPStatus.UNAUTHORIZED, "send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
            return False

        def _json(self, status: HTTPStatus, document: Any) -> None:
            self._send(status, json.dumps(document, separators=(",", ":")).encode(), "application/json")

        def _error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(status, body, "application/json", headers)

        def _send(
            self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
