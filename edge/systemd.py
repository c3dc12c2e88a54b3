"""The sd_notify protocol in a few lines: READY, STATUS, WATCHDOG and STOPPING to systemd.

Sent from the main process itself: with ``User=`` set, systemd rejects notifications from children
under ``NotifyAccess=main``. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.
"""

import logging
import os
import socket

log = logging.getLogger(__name__)


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
            self._address = address
        self.watchdog_seconds = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *fields: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as e:  # systemd going away must never take the daemon down
            log.warning("sd_notify failed: %s", e)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self, monotonic_usec: int) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(env: dict[str, str]) -> float | None:
    """The watchdog period systemd expects (``WatchdogSec=``), if it is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None
