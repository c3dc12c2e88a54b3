"""The sd_notify protocol in a few lines: READY, STATUS, WATCHDOG and STOPPING to systemd.

Sent from the main process itself: with ``User=`` set, systemd rejects notifications from children
under ``NotifyAccess=main``. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. The socket
is non-blocking: a service manager that stops reading (stuck, or a test that never reads) must not stall
classification, so a full queue drops WATCHDOG and STATUS at once and READY, RELOADING and STOPPING
after waiting up to a second; drops are counted and logged.
"""

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# How long READY, RELOADING and STOPPING wait for room in the manager's queue before they are dropped.
STATE_SEND_WAIT_S = 1.0


class Notifier:
    """A connection to systemd's notification socket, if the service manager gave us one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._socket: socket.socket | None = None
        if address:
            if address.startswith("@"):  # abstract namespace
                address = "\0" + address[1:]
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
            self._address = address
        self.watchdog_seconds = _watchdog_seconds(env)
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *fields: str, wait_s: float = 0.0) -> bool:
        """Send one notification; False when it could not be delivered."""
        if self._socket is None:
            return False
        data = "\n".join(fields).encode()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._socket.sendto(data, self._address)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
            except OSError as e:  # systemd going away must never take the daemon down
                log.warning("sd_notify failed: %s", e)
                return False
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            log.warning("the service manager is not reading notifications: %d dropped (%s)", self.dropped, fields[0])
        return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", wait_s=STATE_SEND_WAIT_S)

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self, monotonic_usec: int) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", wait_s=STATE_SEND_WAIT_S)

    def stopping(self) -> None:
        self.send("STOPPING=1", wait_s=STATE_SEND_WAIT_S)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog period systemd expects (``WatchdogSec=``), if it is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None
