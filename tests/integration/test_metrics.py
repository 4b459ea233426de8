"""The metrics endpoint (issue 14, point 1): Prometheus text over HTTP on
metrics_listen, scraped with a real HTTP client; the counters move by what
the calls did; no consumer id, value or token ever shows in a scrape;
metrics are off unless configured (dev mode: on loopback by default)."""
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import pytest

from conftest import BACKEND, VAULTD, free_port, health_pb, pb

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
PUT = ("vault.v1.Consumers", "PutAttributes")
GET = ("vault.v1.Consumers", "GetAttributes")

SECRET_IDS = ["metrics-cid-7f3a9c", "metrics-cid-b81e22", "metrics-cid-c0ffee"]
SECRET_VALUES = ["zq-secret-mail-91@example.test", "zq-secret-mail-92@example.test",
                 "zq-secret-mail-93@example.test"]


def parse(text):
    """Every sample of a text exposition: {(name, ((label, value), ...)): float}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m.group(1), ()
        if m.group(3):
            pairs = LABEL.findall(m.group(3))
            assert ",".join(f'{k}="{v}"' for k, v, _ in pairs) == m.group(3), line
            labels = tuple(sorted((k, v) for k, v, _ in pairs))
        key = (name, labels)
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(m.group(4))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"no TYPE for {name}"
    return samples


class Scrape:
    def __init__(self, text):
        self.text = text
        self.s = parse(text)

    def get(self, name, **labels):
        return self.s.get((name, tuple(sorted(labels.items()))), 0.0)

    def calls(self, svc_method, code):
        svc, method = svc_method
        return self.get("vaultd_rpc_calls_total", service=svc, method=method,
                        code=code)

    def per_method(self, name, svc_method):
        svc, method = svc_method
        return self.get(name, service=svc, method=method)


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(r.read().decode())


def metrics_url(d):
    m = re.findall(r"metrics: Prometheus text on (http://\S+/metrics)", d.log())
    assert m, d.log()
    return m[-1]


def set_config(d, **settings):
    conf = d.data_dir / "vaultd.conf"
    lines = [l for l in conf.read_text().splitlines()
             if l.split("=")[0].strip() not in settings]
    conf.write_text("\n".join(lines + [f"{k} = {v};" for k, v in settings.items()]) + "\n")


def listening_sockets(pid):
    """The TCP sockets process pid listens on (its inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:     # LISTEN
                    n += 1
    return n


def wait_for(cond, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def mdaemon(fresh):
    """A dev daemon with metrics on a free port and DEK counts refreshed each second."""
    fresh.start("--metrics-listen", "off")     # writes the dev config
    assert fresh.stop() == 0
    set_config(fresh, metrics_listen=f'"127.0.0.1:{free_port()}"',
               metrics_dek_refresh_s=1)
    fresh.start()
    yield fresh
    if fresh.proc is not None:
        assert fresh.stop() == 0, fresh.log()


def test_counters_move_by_what_the_calls_did(mdaemon):
    d = mdaemon
    url = metrics_url(d)
    before = scrape(url)
    assert before.get("vaultd_build_info", version="0.1.0") == 1
    assert before.get("vaultd_uptime_seconds") >= 0

    # Three puts and two gets, their message sizes known.
    put_in = put_out = get_in = get_out = 0
    with d.channel() as ch:
        for cid, value in zip(SECRET_IDS, SECRET_VALUES):
            req = pb.PutAttributesRequest(consumer_id=cid, attributes=[
                pb.Attribute(name="email", value=value), pb.Attribute(name="age", value="41")])
            r = d.call("/vault.v1.Consumers/PutAttributes", req,
                       pb.PutAttributesResponse, channel=ch)
            put_in += req.ByteSize()
            put_out += r.ByteSize()
        for cid in SECRET_IDS[:2]:
            req = pb.GetAttributesRequest(consumer_id=cid, names=["email"],
                                          purpose="service")
            r = d.call("/vault.v1.Consumers/GetAttributes", req,
                       pb.GetAttributesResponse, channel=ch)
            assert r.attributes[0].value in SECRET_VALUES
            get_in += req.ByteSize()
            get_out += r.ByteSize()

    # Denied: no credentials, a wrong token; and a method nobody serves.
    bad_token = "zq-not-a-token-5d1e0c9a"
    for token in (None, bad_token):
        with pytest.raises(grpc.RpcError) as e:
            d.put(SECRET_IDS[0], token=token, email=SECRET_VALUES[0])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        d.call("/vault.v1.Zqunknown/Zqmethod", pb.GetFeatureSpecRequest(),
               pb.GetFeatureSpecResponse)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # A stream: health Watch sends one message, then is cancelled.
    with d.channel() as ch:
        watch = d.stream(ch, "/grpc.health.v1.Health/Watch",
                         health_pb.HealthCheckRequest(service=""),
                         health_pb.HealthCheckResponse, token=None)
        first = next(watch)
        assert first.status == health_pb.HealthCheckResponse.SERVING
        watch.cancel()
    watch_m = ("grpc.health.v1.Health", "Watch")
    assert wait_for(lambda: scrape(url).calls(watch_m, "CANCELLED") ==
                    before.calls(watch_m, "CANCELLED") + 1)

    after = scrape(url)
    assert after.calls(PUT, "OK") - before.calls(PUT, "OK") == 3
    assert after.calls(GET, "OK") - before.calls(GET, "OK") == 2
    assert after.calls(PUT, "UNAUTHENTICATED") - before.calls(PUT, "UNAUTHENTICATED") == 2
    unknown = ("unknown", "unknown")
    assert after.calls(unknown, "UNIMPLEMENTED") - before.calls(unknown, "UNIMPLEMENTED") == 1
    for reason in ("missing_credentials", "invalid_credentials"):
        assert after.get("vaultd_rpc_denied_total", reason=reason) - \
            before.get("vaultd_rpc_denied_total", reason=reason) == 1, reason
    assert after.get("vaultd_rpc_denied_total", reason="role") == \
        before.get("vaultd_rpc_denied_total", reason="role")

    # Bytes: exactly the request and reply messages.
    d_in = lambda m: after.per_method("vaultd_rpc_received_bytes_total", m) - \
        before.per_method("vaultd_rpc_received_bytes_total", m)
    d_out = lambda m: after.per_method("vaultd_rpc_sent_bytes_total", m) - \
        before.per_method("vaultd_rpc_sent_bytes_total", m)
    assert d_in(PUT) == put_in and d_out(PUT) == put_out
    assert d_in(GET) == get_in and d_out(GET) == get_out
    assert after.per_method("vaultd_rpc_stream_messages_sent_total", watch_m) - \
        before.per_method("vaultd_rpc_stream_messages_sent_total", watch_m) == 1
    assert after.per_method("vaultd_rpc_sent_bytes_total", watch_m) > \
        before.per_method("vaultd_rpc_sent_bytes_total", watch_m)

    # Latency histograms: five ended calls of PUT (3 ok, 2 refused).
    h = lambda s, suffix, **l: s.get("vaultd_rpc_duration_seconds" + suffix,
                                     service=PUT[0], method=PUT[1], **l)
    assert h(after, "_count") - h(before, "_count") == 5
    assert h(after, "_bucket", le="+Inf") == h(after, "_count")
    assert h(after, "_sum") > h(before, "_sum")
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in after.s.items()
                     if n == "vaultd_rpc_duration_seconds_bucket" and
                     dict(l)["method"] == "PutAttributes")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)   # cumulative

    # The writer: each put is a request of some group, each durable.
    assert after.get("vaultd_writer_group_size_sum") - \
        before.get("vaultd_writer_group_size_sum") >= 3
    assert after.get("vaultd_writer_group_size_count") > \
        before.get("vaultd_writer_group_size_count")
    assert after.get("vaultd_store_fsyncs_total") > before.get("vaultd_store_fsyncs_total")

    # The vault's state.
    assert after.get("vaultd_consumers") == 3
    assert after.get("vaultd_master_key_versions", state="active") == 1
    assert wait_for(lambda: scrape(url).get("vaultd_master_key_deks", version="1",
                                            state="active") == 3)
    # PostgreSQL has no map: its map size is 0, its use the database's size.
    assert 0 < after.get("vaultd_store_used_bytes")
    assert after.get("vaultd_store_used_bytes") <= \
        after.get("vaultd_store_map_bytes") or BACKEND != "lmdb"
    assert after.get("vaultd_store_refusing_writes") == 0
    assert after.get("vaultd_store_failed") == 0
    assert after.get("vaultd_audit_broken") == 0
    assert after.get("vaultd_rotation_in_progress") == 0
    assert after.get("vaultd_metrics_scrape_ok") == 1

    # A deletion is pending final until its master key version is destroyed.
    pending = after.get("vaultd_deletions_pending_final_total")
    assert d.delete(SECRET_IDS[2], request_id="metrics-dsr-1").found
    last = scrape(url)
    assert last.get("vaultd_deletions_pending_final_total") == pending + 1
    assert last.get("vaultd_deletions_pending_final", version="1") == pending + 1
    assert last.get("vaultd_consumers") == 2
    assert last.get("vaultd_deletion_ledger_events") >= 0

    # Nothing a caller chose reaches a label or a line.
    for text in (before.text, after.text, last.text):
        for secret in SECRET_IDS + SECRET_VALUES + [bad_token, d.token,
                                                    "Zqunknown", "Zqmethod"]:
            assert secret not in text, secret


def test_rotation_progress_and_key_versions(mdaemon):
    d = mdaemon
    url = metrics_url(d)
    for i in range(5):
        d.put(f"rot-{i}", email=f"rot{i}@example.test")
    with d.channel() as ch:
        msgs = list(d.stream(ch, "/vault.v1.Keys/RotateMasterKey",
                             pb.RotateMasterKeyRequest(), pb.RotationProgress))
    assert msgs[-1].done
    s = scrape(url)
    assert s.get("vaultd_master_key_versions", state="active") == 1
    assert s.get("vaultd_master_key_versions", state="decrypt_only") == 1
    assert s.get("vaultd_rotation_in_progress") == 0
    rot = ("vault.v1.Keys", "RotateMasterKey")
    assert s.per_method("vaultd_rpc_stream_messages_sent_total", rot) == len(msgs)
    # Every DEK moved to version 2 (counted again within a second).
    assert wait_for(lambda: scrape(url).get("vaultd_master_key_deks", version="2",
                                            state="active") == 5)
    assert scrape(url).get("vaultd_master_key_deks", version="1",
                           state="decrypt_only") == 0


def test_only_get_metrics(mdaemon):
    url = metrics_url(mdaemon)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"),
                               timeout=10)
    assert e.value.code == 405


def test_off_by_default_in_production_config(fresh, tmp_path):
    """vaultd --config without metrics_listen serves no metrics."""
    fresh.start("--metrics-listen", "off")
    assert "metrics: off" in fresh.log()
    assert listening_sockets(fresh.proc.pid) == 1          # gRPC's only
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    assert "metrics_listen" not in conf.read_text()
    seen = len(fresh.log())
    log_file = open(fresh.log_path, "ab")
    fresh.log_file = log_file
    fresh.proc = subprocess.Popen([VAULTD, "--config", str(conf), "--listen", fresh.addr],
                                  stdout=log_file, stderr=subprocess.STDOUT)
    assert wait_for(lambda: "vaultd 0.1.0 ready" in fresh.log()[seen:]), fresh.log()
    assert "development mode" not in fresh.log()[seen:]
    assert "metrics: off (set metrics_listen" in fresh.log()[seen:]
    assert listening_sockets(fresh.proc.pid) == 1
    assert fresh.stop() == 0


def test_dev_mode_serves_metrics_on_loopback(fresh):
    """Dev mode without the setting: 127.0.0.1:9464, or a warning if taken."""
    fresh.start()
    log = fresh.log()
    served = "metrics: Prometheus text on http://127.0.0.1:9464/metrics" in log
    taken = "dev mode's default address 127.0.0.1:9464 is taken" in log
    assert served != taken, log
    assert listening_sockets(fresh.proc.pid) == (2 if served else 1)
    if served:
        assert scrape("http://127.0.0.1:9464/metrics").get("vaultd_build_info",
                                                          version="0.1.0") == 1
    assert fresh.stop() == 0


def test_an_address_in_use_refuses_the_start(fresh):
    fresh.start("--metrics-listen", "off")
    assert fresh.stop() == 0
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        fresh.spawn("--metrics-listen", f"127.0.0.1:{port}")
        assert fresh.wait_exit() != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in fresh.log()
    assert "not started; nothing was written" in fresh.log()
