import os
import socket

import pytest

from edge.systemd import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    yield server, str(path)
    server.close()


def test_ready_and_status_reach_the_notify_socket(notify_socket):
    server, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("classifying camera 0")
    assert server.recv(4096).decode().split("\n") == ["READY=1", "STATUS=classifying camera 0"]
    notifier.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    notifier.stopping()
    assert server.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_abstract_namespace_address():
    name = f"edgesight-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).status("loading")
        assert server.recv(4096) == b"STATUS=loading"
    finally:
        server.close()


def test_without_systemd_every_call_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_seconds is None
    notifier.ready("x")  # must not raise


def test_a_vanished_socket_does_not_raise(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    notifier.watchdog()


def test_a_manager_that_stops_reading_never_blocks_the_daemon(notify_socket, caplog):
    server, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    # Nobody reads: the datagram queue fills up, then pings are dropped, counted and logged, never waited on.
    delivered = [notifier.send("WATCHDOG=1") for _ in range(5000)]
    assert delivered[0] is True and delivered[-1] is False
    assert notifier.dropped == delivered.count(False) > 0
    assert "not reading notifications" in caplog.text
    notifier.stopping()  # waits its second for room, then gives up
    assert notifier.dropped == delivered.count(False) + 1
    assert server.recv(4096) == b"WATCHDOG=1"  # what was queued is intact


def test_watchdog_period_only_for_this_process():
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_seconds == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_seconds == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None


def test_log_lines_carry_journal_priorities_when_stderr_is_the_journal(tmp_path):
    """systemd sets $JOURNAL_STREAM to stderr's device:inode; a file stands in for the journal's socket."""
    import os
    import subprocess
    import sys

    log = tmp_path / "stderr"
    script = (
        "import logging; from edge.console import setup_logging; setup_logging('info');"
        "logging.getLogger('edgesight').warning('camera lost'); logging.getLogger('edgesight').info('ready')"
    )
    with log.open("w") as stderr:
        stat = os.fstat(stderr.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        subprocess.run([sys.executable, "-c", script], stderr=stderr, env=env, check=True, timeout=60)
    assert log.read_text().splitlines() == ["<4>edgesight: camera lost", "<6>edgesight: ready"]
    with log.open("w") as stderr:
        subprocess.run([sys.executable, "-c", script], stderr=stderr, check=True, timeout=60)
    assert " WARNING edgesight: camera lost" in log.read_text()
