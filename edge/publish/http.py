"""The HTTP server: a live page, JSON API, Prometheus metrics, snapshots and classification of uploads.

Standard library only (``edge.publish.server``: a bounded pool of handler threads), so it fits a Pi
Zero 2 W. Bound to 127.0.0.1 by default; with a bearer token every endpoint except ``/``, ``/label``,
``/favicon.ico`` (static) and ``/healthz`` (for probes) requires ``Authorization: Bearer <token>``.
``/api/dataset`` is ``edge.collect.api``'s.
"""

import errno
import hmac
import json
import logging
import struct
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any

import cv2
import numpy as np

from edge.collect.api import MAX_BODY_BYTES, PREFIX, DatasetApi, Reply
from edge.errors import EXIT_CONFIG, EdgesightError
from edge.postprocess import Classification
from edge.publish.metrics import CountCollector, exposition, registry_for
from edge.publish.secrets import read_secret
from edge.publish.server import BoundedHttpServer
from edge.publish.settings import HttpSettings, check
from edge.publish.snapshot import annotate, encode_jpeg
from edge.publish.upload import UploadError, check_upload
from edge.state import LiveState

log = logging.getLogger(__name__)

Classify = Callable[[np.ndarray], Classification]
READ_TIMEOUT_S = 10  # a client that stalls mid-request loses its connection, not a thread forever


def favicon(size: int = 32) -> bytes:
    """An ICO holding one PNG: a green eye, drawn here so the page needs no asset and browsers get no 404."""
    image = np.zeros((size, size, 4), np.uint8)  # BGRA, transparent
    centre, radius = (size // 2, size // 2), size // 2 - 1
    cv2.circle(image, centre, radius, (80, 175, 76, 255), -1, cv2.LINE_AA)
    cv2.circle(image, centre, radius // 2, (255, 255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(image, centre, radius // 4, (48, 35, 29, 255), -1, cv2.LINE_AA)
    png = cv2.imencode(".png", image)[1].tobytes()
    # ICONDIR (reserved, type 1 = icon, one image), then its ICONDIRENTRY pointing past both headers.
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", size, size, 0, 0, 1, 32, len(png), 22) + png


def read_token(settings: HttpSettings) -> str | None:
    """The bearer token from ``token_file`` or systemd's ``http_token`` credential; None: no token."""
    return read_secret(settings.token_file, "http_token", "[http] token_file")


class HttpServer:
    """Serves the live ``state`` over HTTP from its own threads; ``classify`` answers ``POST /api/classify``.

    ``classify`` is called from request threads, one call at a time: give it a classifier that
    the daemon loop does not use concurrently, or one guarded by the daemon's own lock. It applies
    the daemon's ``[results] threshold``, so an upload is labelled as a frame would be.
    """

    def __init__(
        self,
        settings: HttpSettings,
        state: LiveState,
        classify: Classify | None = None,
        dataset: DatasetApi | None = None,
    ) -> None:
        check(settings, "http")
        self.settings = settings
        self.state = state
        self.registry = registry_for(state)
        self.classify = classify
        self.dataset = dataset
        self.classify_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._snapshot: tuple[int, bytes] | None = None  # frames classified when encoded, the JPEG
        self.token = read_token(settings)
        self.page = resources.files("edge.publish").joinpath("page.html").read_bytes()
        self.label_page = resources.files("edge.publish").joinpath("label.html").read_bytes()
        self.favicon = favicon()
        try:
            self._server = BoundedHttpServer((settings.host, settings.port), _handler(self))
        except OSError as e:
            fix = "pick another port or stop what uses it"
            if e.errno == errno.EPERM:  # the unit's SocketBindAllow=, written for the port configured then
                fix = "the service may listen only on the port install.sh found in the config: run sudo make install"
            raise EdgesightError(
                f"[http] host/port: cannot listen on {settings.host}:{settings.port} ({e.strerror}); {fix}",
                EXIT_CONFIG,
            ) from e
        self._thread: threading.Thread | None = None
        self.registry.register(
            CountCollector(
                "edgesight_http_refused",
                "HTTP connections answered 503: every handler was busy.",
                lambda: self._server.refused,
            )
        )

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
        if self.dataset is not None:
            self.dataset.close(timeout)

    def snapshot_jpeg(self) -> bytes | None:
        """The latest frame with its top-k drawn on it (none while collecting without a model); encoded once
        per frame, outside the state's lock."""
        frames, result, image = self.state.latest()
        if image is None:
            return None
        with self._snapshot_lock:
            if self._snapshot is None or self._snapshot[0] != frames:
                annotated = annotate(image, result.topk if result else (), self.settings.snapshot_width)
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
            if path == "/label":
                return self._send(HTTPStatus.OK, app.label_page, "text/html; charset=utf-8")
            if path == PREFIX or path.startswith(PREFIX + "/"):
                return self._dataset("GET")
            if path == "/favicon.ico":
                return self._send(HTTPStatus.OK, app.favicon, "image/x-icon")
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
            if path == PREFIX or path.startswith(PREFIX + "/"):
                return self._dataset("POST")
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
                unavailable = app.state.model is None  # collecting, before a bundle is deployed
                return self._error(
                    HTTPStatus.SERVICE_UNAVAILABLE if unavailable else HTTPStatus.UNPROCESSABLE_ENTITY, str(e)
                )
            return self._json(HTTPStatus.OK, classification.to_json())

        def _dataset(self, method: str) -> None:
            """The /api/dataset endpoints (edge.collect.api), behind the same token as the rest."""
            if not self._authorized():
                return None
            if app.dataset is None:
                return self._error(HTTPStatus.NOT_FOUND, "this daemon keeps no dataset (see [collect] in the README)")
            body = b""
            if method == "POST":
                try:
                    size = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    size = -1
                if not 0 <= size <= MAX_BODY_BYTES:
                    self.close_connection = True
                    return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"send at most {MAX_BODY_BYTES} bytes")
                body = self.rfile.read(size)
            reply: Reply = app.dataset.handle(method, self.path, body)
            if reply.stream is None:
                return self._send(reply.status, reply.body, reply.content_type, dict(reply.headers))
            self.send_response(reply.status)  # a stream: its length is where the connection closes
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.close_connection = True
            try:
                reply.stream(self.wfile)
            except OSError as e:
                log.warning("http: %s %s ended early (%s)", method, self.path.split("?", 1)[0], e)
            return None

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
