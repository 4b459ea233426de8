"""sd_notify (issue 14, point 4): a real datagram socket stands in for
systemd's; libsystemd in vaultd writes READY, RELOADING, STOPPING and the
watchdog pings to it."""
import signal
import socket
import time

import pytest

from conftest import Daemon


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield s
    s.close()


def receive_until(s, want, timeout=30):
    """Datagrams until one holds want; returns all of them."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        got.append(msg)
        if want in msg.split("\n"):
            return got
    raise AssertionError(f"no {want!r}; got {got!r}")


def test_ready_reloading_stopping(tmp_path, notify_socket):
    d = Daemon(tmp_path / "vault")
    d.start()
    try:
        got = receive_until(notify_socket, "READY=1")
        assert any(m.startswith("READY=1\nSTATUS=") for m in got), got
        d.proc.send_signal(signal.SIGHUP)
        got = receive_until(notify_socket, "RELOADING=1")
        assert any("MONOTONIC_USEC=" in m for m in got), got
        receive_until(notify_socket, "READY=1")
        d.proc.send_signal(signal.SIGTERM)
        receive_until(notify_socket, "STOPPING=1")
        assert d.wait_exit() == 0
    finally:
        if d.proc is not None:
            d.stop()


def test_watchdog_pings_while_serving(tmp_path, notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    d = Daemon(tmp_path / "vault")
    d.start()
    try:
        receive_until(notify_socket, "READY=1")
        for _ in range(3):
            receive_until(notify_socket, "WATCHDOG=1")
        assert "systemd watchdog: pinging every 200 ms" in d.log()
        # Calls are served between pings.
        assert d.put("alice", age="34") is not None
        receive_until(notify_socket, "WATCHDOG=1")
    finally:
        assert d.stop() == 0


def test_no_watchdog_for_another_pid(tmp_path, notify_socket, monkeypatch):
    """WATCHDOG_PID naming another process: the watchdog is not ours."""
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    d = Daemon(tmp_path / "vault")
    d.start()
    try:
        receive_until(notify_socket, "READY=1")
        assert "systemd watchdog" not in d.log()
    finally:
        assert d.stop() == 0
