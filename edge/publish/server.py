"""An HTTP server with limits a Pi can afford: a deep listen backlog, a fixed pool of handler threads,
and an immediate ``503`` with ``Retry-After`` when the pool and its short queue are full.

socketserver's defaults do not survive a burst: a listen backlog of 5 (200 clients at once got TCP
resets) and a new thread for every connection, without limit (a burst, or clients that stall, cost a
thread each). A client that drops its connection is one debug line here, not a traceback in the journal.
"""

import contextlib
import json
import logging
import queue
import selectors
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, HTTPServer

log = logging.getLogger(__name__)

BACKLOG = 128  # connections the kernel holds before we accept them
HANDLER_THREADS = 8  # requests served at once; /api/classify is one model call at a time anyway
QUEUED = 64  # accepted connections waiting for a handler thread; beyond that, 503
RETRY_AFTER_S = 1
DRAIN_S = 1.0  # how long a refused client may take to close after its 503
MAX_DRAINING = 256  # refused connections held open at once; past that they are closed unanswered

Connection = tuple[socket.socket, tuple]


def busy_response() -> bytes:
    body = json.dumps({"error": f"busy: every handler is in use; retry in {RETRY_AFTER_S} s"}).encode()
    head = (
        "HTTP/1.0 503 Service Unavailable\r\n"
        f"Retry-After: {RETRY_AFTER_S}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpServer(HTTPServer):
    """``HTTPServer`` whose requests run on ``threads`` worker threads; see the module docstring."""

    request_queue_size = BACKLOG
    _workers: tuple[threading.Thread, ...] = ()  # none until the socket is bound
    _refuser: "Refuser | None" = None

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        threads: int = HANDLER_THREADS,
        queued: int = QUEUED,
    ) -> None:
        super().__init__(address, handler)
        self.refused = 0  # connections answered 503 (or, past MAX_DRAINING, closed unanswered)
        self._refusing = False  # inside a busy episode, logged at its start
        self._pending: queue.Queue[Connection | None] = queue.Queue(queued)
        self._workers = tuple(
            threading.Thread(target=self._serve_pending, name=f"http-{i}", daemon=True) for i in range(threads)
        )
        self._refuser = Refuser()
        for thread in (*self._workers, self._refuser):
            thread.start()

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        """Called by the accepting thread: hand the connection to a worker, or refuse it at once."""
        try:
            self._pending.put_nowait((request, client_address))
            self._refusing = False
            return
        except queue.Full:
            pass
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            log.warning("http: every handler is busy; answering 503 with Retry-After (%d so far)", self.refused)
        assert self._refuser is not None
        self._refuser.refuse(request)

    def _serve_pending(self) -> None:
        while (item := self._pending.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request: object, client_address: tuple) -> None:
        """A client that went away mid-request is normal on a network; anything else is a bug."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("http: %s went away (%s)", client_address[0], error)
            return
        log.exception("http: the request from %s failed", client_address[0])

    def server_close(self) -> None:
        super().server_close()
        if not self._workers:  # the bind failed: nothing was started
            return
        while True:  # connections still waiting are closed, then each worker gets its stop marker
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])
        for _ in self._workers:
            self._pending.put(None)
        if self._refuser is not None:
            self._refuser.stop()


class Refuser(threading.Thread):
    """Answers refused connections with the 503, then reads what each client sent until it closes (at most
    ``DRAIN_S``), all in one thread with a selector.

    Closing a socket that holds unread data makes the kernel send a reset, and a reset can overtake the
    503: the client must have closed first.
    """

    def __init__(self) -> None:
        super().__init__(name="http-busy", daemon=True)
        self._response = busy_response()
        self._selector = selectors.DefaultSelector()
        self._wake_receiver, self._waker = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._selector.register(self._wake_receiver, selectors.EVENT_READ)
        self._incoming: deque[socket.socket] = deque()  # from the accepting thread
        self._deadlines: dict[socket.socket, float] = {}  # this thread's own
        self._stopping = False

    def refuse(self, request: socket.socket) -> None:
        if len(self._incoming) + len(self._deadlines) >= MAX_DRAINING:
            request.close()
            return
        self._incoming.append(request)
        self._waker.send(b"\0")

    def stop(self) -> None:
        self._stopping = True
        self._waker.send(b"\0")

    def run(self) -> None:
        while not self._stopping:
            timeout = max(0.0, min(self._deadlines.values()) - time.monotonic()) if self._deadlines else None
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_receiver:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_receiver.recv(4096)
                    while self._incoming:
                        self._answer(self._incoming.popleft())
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            for request in [r for r, deadline in self._deadlines.items() if deadline <= now]:
                self._close(request)
        for request in [*self._deadlines, *self._incoming]:
            request.close()
        self._selector.close()
        self._wake_receiver.close()
        self._waker.close()

    def _answer(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(self._response)  # a fresh connection's send buffer takes it whole
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        self._deadlines[request] = time.monotonic() + DRAIN_S
        self._selector.register(request, selectors.EVENT_READ)

    def _read(self, request: socket.socket) -> None:
        try:
            data = request.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client has closed: now closing leaves nothing unread
            self._close(request)

    def _close(self, request: socket.socket) -> None:
        self._selector.unregister(request)
        del self._deadlines[request]
        request.close()
