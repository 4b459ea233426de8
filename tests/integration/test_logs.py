"""Logs (issue 14, point 3): log_format = "json" writes one JSON object a
line (time, level, message, fields), gRPC core's own lines go through the
same logger, and log_level = debug shows one line per call, without a
consumer id or value; the text format stays as it was by default."""
import json
import re
import socket
import ssl
import time

import grpc
import pytest

from conftest import pb

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z vaultd "
                       r"(error|warn|info|debug) [A-Za-z_][A-Za-z0-9_]*: .")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
IDS = ["logs-cid-4be1d7", "logs-cid-93aa0f"]
VALUES = ["zq-logsecret-1@example.test", "zq-logsecret-2@example.test"]


def set_config(d, **settings):
    conf = d.data_dir / "vaultd.conf"
    lines = [l for l in conf.read_text().splitlines()
             if l.split("=")[0].strip() not in settings]
    conf.write_text("\n".join(lines + [f"{k} = {v};" for k, v in settings.items()]) + "\n")


def json_lines(text):
    """Every line of text as a parsed object: each must be one."""
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        assert set(obj) >= {"time", "level", "message", "fields"}, line
        assert STAMP.match(obj["time"]), line
        assert obj["level"] in ("error", "warn", "info", "debug"), line
        assert isinstance(obj["fields"], dict), line
        out.append(obj)
    return out


def restart_with(d, *extra, **settings):
    """Stops d, sets settings, and starts it on a log of its own."""
    assert d.stop() == 0
    set_config(d, **settings)
    d.log_path = d.data_dir.parent / "second.log"
    d.start(*extra)


def wait_for(cond, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_json_log_with_debug_call_lines(daemon):
    restart_with(daemon, log_format='"json"', log_level='"debug"')
    for cid, value in zip(IDS, VALUES):
        daemon.put(cid, email=value)
        assert daemon.get(cid, names=["email"]) == {"email": value}
    with pytest.raises(grpc.RpcError) as e:       # a bad call: no credentials
        daemon.get(IDS[0], token=None)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:       # and bad input
        daemon.put(IDS[1], email="x" * 300)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wait_for(lambda: daemon.log().count('"message":"call"') >= 6)
    assert daemon.stop() == 0

    text = daemon.log()
    lines = json_lines(text)
    ready = [l for l in lines if l["message"].startswith("vaultd 0.1.0 ready")]
    assert ready and ready[0]["level"] == "info"
    calls = [l for l in lines if l["message"] == "call"]
    for c in calls:
        assert c["level"] == "debug"
        assert set(c["fields"]) <= {"method", "principal", "status", "duration_ms", "error"}
        assert c["fields"]["duration_ms"] >= 0
    by = lambda m, s: [c for c in calls if c["fields"]["method"] == m and
                       c["fields"]["status"] == s]
    puts = by("/vault.v1.Consumers/PutAttributes", "OK")
    assert len(puts) == 2 and all(c["fields"]["principal"] == "dev" for c in puts)
    assert len(by("/vault.v1.Consumers/GetAttributes", "OK")) == 2
    denied = by("/vault.v1.Consumers/GetAttributes", "UNAUTHENTICATED")
    assert len(denied) == 1
    assert denied[0]["fields"]["principal"] == "-"
    assert "missing credentials" in denied[0]["fields"]["error"]
    bad = by("/vault.v1.Consumers/PutAttributes", "INVALID_ARGUMENT")
    assert len(bad) == 1 and "email" in bad[0]["fields"]["error"]
    # Never an id, a value or the token.
    for secret in IDS + VALUES + [daemon.token, "x" * 300]:
        assert secret not in text, secret


def test_refused_tls_handshake_goes_through_the_logger(tls_daemon):
    d = tls_daemon
    restart_with(d, log_format='"json"')
    # A client that speaks TLS but trusts no one: the handshake fails.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                s.recv(100)
        except (ssl.SSLError, OSError):
            pass
    # And one that sends no TLS at all.
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0" * 64)
        try:
            s.recv(100)
        except OSError:
            pass
    assert wait_for(lambda: "Handshake failed" in d.log() or
                    "handshake" in d.log().lower())
    assert d.stop() == 0
    lines = json_lines(d.log())
    grpc_lines = [l for l in lines if l.get("func") == "grpc"]
    assert grpc_lines, d.log()
    hs = [l for l in grpc_lines if "andshake" in l["message"]]
    assert hs, d.log()
    for l in hs:
        assert l["level"] in ("warn", "error"), l
        assert l["fields"]["file"] and l["fields"]["line"] > 0
    # gRPC's own format (E1202 ... file:line]) never reaches the log.
    assert not re.search(r"^[EIDW]\d{4} ", d.log(), re.M), d.log()


def test_text_format_unchanged_by_default(daemon):
    daemon.put(IDS[0], email=VALUES[0])
    assert daemon.stop() == 0
    text = daemon.log()
    lines = [l for l in text.splitlines() if l]
    assert lines
    for line in lines:
        assert TEXT_LINE.match(line), line
    assert '"message"' not in text
    assert "vaultd 0.1.0 ready (development mode)" in text
    assert VALUES[0] not in text and IDS[0] not in text


def test_debug_text_call_lines(daemon):
    restart_with(daemon, log_level='"debug"')
    daemon.put(IDS[0], email=VALUES[0])
    assert wait_for(lambda: " call: call method=/vault.v1.Consumers/PutAttributes "
                    "principal=dev status=OK duration_ms=" in daemon.log()), daemon.log()
    assert daemon.stop() == 0
    for line in daemon.log().splitlines():
        assert TEXT_LINE.match(line), line
    assert VALUES[0] not in daemon.log() and IDS[0] not in daemon.log()


def test_unknown_log_format_is_refused(fresh):
    fresh.start()
    assert fresh.stop() == 0
    set_config(fresh, log_format='"yaml"')
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "'log_format' must be one of text|json" in fresh.log()
