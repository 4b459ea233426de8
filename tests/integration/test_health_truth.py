"""Health that tells the truth (issue 14, point 2): grpc.health.v1 Check and
Watch say NOT_SERVING for the write service while the store is full for
writes, and for every service (and "") when the audit chain failed its
check at start; Watch pushes each change, and SERVING comes back when the
cause is gone. The metrics endpoint shows the same state."""
import re
import threading
import time
import urllib.request

import grpc
import pytest

from conftest import free_port, health_pb, pb
from test_audit_startup import corrupt_raw, set_config, write_entries
from test_space import fill_disk, small_disk  # noqa: F401 (a fixture)

SERVING = health_pb.HealthCheckResponse.SERVING
NOT_SERVING = health_pb.HealthCheckResponse.NOT_SERVING


class Watcher:
    """A health Watch stream read on a thread: every status it pushed."""

    def __init__(self, d, service):
        self.ch = grpc.insecure_channel(d.addr)
        self.call = d.stream(self.ch, "/grpc.health.v1.Health/Watch",
                             health_pb.HealthCheckRequest(service=service),
                             health_pb.HealthCheckResponse, token=None,
                             timeout=600)
        self.seen = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for msg in self.call:
                self.seen.append(msg.status)
        except grpc.RpcError:
            pass

    def wait(self, statuses, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen == list(statuses):
                return True
            time.sleep(0.05)
        raise AssertionError(f"watch saw {self.seen}, expected {list(statuses)}")

    def close(self):
        self.call.cancel()
        self.thread.join(timeout=10)
        self.ch.close()


def metric(url, name):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, text
    return float(m.group(1))


@pytest.mark.lmdb_only  # fills the disk under LMDB's file
def test_disk_full_and_back_is_pushed_by_watch(small_disk):  # noqa: F811
    d, db = small_disk
    set_config(d, "max_public_streams_per_peer = 8;")    # three watchers
    port = free_port()
    d.start("--metrics-listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    writes, whole, deletion = (Watcher(d, "vault.v1.Consumers"), Watcher(d, ""),
                               Watcher(d, "vault.v1.Deletion"))
    try:
        for w in (writes, whole, deletion):
            w.wait([SERVING])
        assert metric(url, "vaultd_store_refusing_writes") == 0

        filler = db / "filler"
        fill_disk(filler)
        # The janitor re-checks the room every second; a write finds out at once.
        try:
            d.put("x1", email="x1@example.test")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        writes.wait([SERVING, NOT_SERVING])
        assert d.health("vault.v1.Consumers") == NOT_SERVING
        assert d.health("") == SERVING
        assert d.health("vault.v1.Deletion") == SERVING
        assert metric(url, "vaultd_store_refusing_writes") == 1
        # Deletion goes on in the reserve, and says so.
        assert d.delete("d3", request_id="dsr-health-d3").found

        filler.unlink()
        writes.wait([SERVING, NOT_SERVING, SERVING])
        assert d.health("vault.v1.Consumers") == SERVING
        assert metric(url, "vaultd_store_refusing_writes") == 0
        d.put("x1", email="x1@example.test")
        # The whole server and the deletion service never changed.
        assert whole.seen == [SERVING] and deletion.seen == [SERVING]
    finally:
        for w in (writes, whole, deletion):
            w.close()
    assert d.stop() == 0


@pytest.mark.lmdb_only  # damages an audit entry in LMDB's file
def test_broken_audit_chain_is_not_serving_everywhere(daemon):
    write_entries(daemon, 5)
    assert daemon.stop() == 0
    corrupt_raw(daemon, 5)
    set_config(daemon, 'audit_broken = "not_serving";')
    set_config(daemon, "max_public_streams_per_peer = 8;")
    port = free_port()
    daemon.start("--metrics-listen", f"127.0.0.1:{port}", ready=(NOT_SERVING,))
    watchers = [Watcher(daemon, s) for s in ("", "vault.v1.Consumers",
                                             "vault.v1.Deletion", "vault.v1.Audit")]
    try:
        for w in watchers:
            w.wait([NOT_SERVING])
        for s in ("", "vault.v1.Consumers", "vault.v1.Features", "vault.v1.Keys"):
            assert daemon.health(s) == NOT_SERVING, s
        assert metric(f"http://127.0.0.1:{port}/metrics", "vaultd_audit_broken") == 1
    finally:
        for w in watchers:
            w.close()
    assert daemon.stop() == 0


def test_unknown_service_is_not_found(daemon):
    try:
        daemon.health("vault.v1.Nothing")
        raise AssertionError("an unknown service was answered")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND


def consumers_root(d):
    """The page number of the consumers space's root, read from the main DB."""
    import lmdb
    import struct
    env = lmdb.open(str(d.data_dir / "db"), max_dbs=16, subdir=True,
                    readonly=True, lock=False)
    try:
        with env.begin() as txn:
            rec = txn.get(b"consumers")     # the named DB's MDB_db record
        page = env.stat()["psize"]
    finally:
        env.close()
    assert rec is not None and len(rec) == 48
    return struct.unpack_from("<Q", rec, 40)[0], page


@pytest.mark.lmdb_only  # damages LMDB's file
def test_failed_store_is_not_serving_everywhere(daemon):
    """A fatal store error (a corrupted page) fails every call and health."""
    import os
    daemon.put("fail-1", email="f1@example.test")
    set_config(daemon, "max_public_streams_per_peer = 8;")
    assert daemon.stop() == 0
    daemon.start()
    whole, writes = Watcher(daemon, ""), Watcher(daemon, "vault.v1.Consumers")
    try:
        whole.wait([SERVING])
        writes.wait([SERVING])
        root, psize = consumers_root(daemon)
        # The root page's flags (offset 10) say neither branch nor leaf:
        # LMDB answers MDB_CORRUPTED, which marks the store failed.
        fd = os.open(daemon.data_dir / "db" / "data.mdb", os.O_WRONLY)
        try:
            os.pwrite(fd, b"\0\0", root * psize + 10)
        finally:
            os.close(fd)
        try:
            daemon.get("fail-1")
            raise AssertionError("a read of a corrupted page succeeded")
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.INTERNAL), e
        whole.wait([SERVING, NOT_SERVING])
        writes.wait([SERVING, NOT_SERVING])
        for s in ("", "vault.v1.Deletion", "vault.v1.Audit"):
            assert daemon.health(s) == NOT_SERVING, s
        assert "fatal store error" in daemon.log()
    finally:
        whole.close()
        writes.close()
    daemon.stop()
