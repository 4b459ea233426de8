"""Faults of the store's files at start, and of the stop (issue 12, points 3,
4 and 8): a lost or emptied data.mdb next to its keys, a truncated data.mdb,
--init, and SIGTERM with idle connections or a call in flight."""
import concurrent.futures
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import grpc
import pytest

import rawh2
from conftest import VAULTD, pb, health_pb

# These tests read or damage LMDB's own files, or use its tools.
pytestmark = pytest.mark.lmdb_only

MISSING = "the store is missing but keys for it exist; restore it, or start " \
          "with --init to create a new vault"


def snapshot(root):
    """Every file and directory under root: path -> content hash (or 'dir')."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def spawn_config(d, conf, *extra):
    """vaultd --config conf on d's port, logging to d's log, as Daemon.spawn."""
    d.log_file = open(d.log_path, "ab")
    d.proc = subprocess.Popen([VAULTD, "--config", str(conf), "--listen", d.addr,
                               *extra], stdout=d.log_file, stderr=subprocess.STDOUT)
    return d.proc


def wait_serving(d):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert d.proc.poll() is None, d.log()
        try:
            if d.health() == health_pb.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise AssertionError("vaultd did not become healthy:\n" + d.log())


def refused(d, spawn, *why):
    """spawn() must exit non-zero (not by a signal), log every why, change nothing."""
    before = snapshot(d.data_dir)
    mark = len(d.log())
    spawn()
    rc = d.wait_exit(timeout=30)
    text = d.log()[mark:]
    assert rc > 0, f"exit {rc}:\n{text}"
    for w in why:
        assert w in text, text
    # The line a started vault logs ("vaultd 0.1.0 ready"), not any "ready"
    # ("already in use" when another vault holds dev mode's metrics port).
    assert not re.search(r"vaultd \S+ ready", text), text
    assert snapshot(d.data_dir) == before
    return text


def put_many(d, n, prefix="c"):
    with d.channel() as ch, concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: d.call(
            "/vault.v1.Consumers/PutAttributes",
            pb.PutAttributesRequest(consumer_id=f"{prefix}{i}", attributes=[
                pb.Attribute(name="age", value=str(20 + i % 50)),
                pb.Attribute(name="device", value="mobile"),
                pb.Attribute(name="zip", value=f"{10000 + i}")]),
            pb.PutAttributesResponse, channel=ch), range(n)))


# ------------------------------------------------------ point 3: lost store

@pytest.mark.parametrize("loss", ["missing", "empty", "no-db-dir"])
def test_missing_store_with_keys_refused(fresh, loss):
    fresh.start()
    fresh.put("ada", age="36")
    assert fresh.stop() == 0
    db = fresh.data_dir / "db"
    saved = fresh.data_dir.parent / "saved"
    shutil.copytree(db, saved)
    if loss == "missing":
        (db / "data.mdb").unlink()
    elif loss == "empty":
        (db / "data.mdb").write_bytes(b"")
    else:
        shutil.rmtree(db)
    conf = fresh.data_dir / "vaultd.conf"

    refused(fresh, fresh.spawn, MISSING)                         # --dev
    refused(fresh, lambda: spawn_config(fresh, conf), MISSING)   # --config
    # --init does not take the old keys for a new vault.
    refused(fresh, lambda: fresh.spawn("--init"), "master key files",
            "move them aside")

    # Restored, the vault is whole again.
    shutil.rmtree(db, ignore_errors=True)
    shutil.copytree(saved, db)
    fresh.start()
    assert fresh.get("ada") == {"age": "36"}
    assert fresh.stop() == 0


def test_init_refused_while_a_store_exists(fresh):
    fresh.start()
    fresh.put("bea", age="41")
    assert fresh.stop() == 0
    refused(fresh, lambda: fresh.spawn("--init"), "a store exists")
    conf = fresh.data_dir / "vaultd.conf"
    refused(fresh, lambda: spawn_config(fresh, conf, "--init"), "a store exists")
    fresh.start()
    assert fresh.get("bea") == {"age": "41"}
    assert fresh.stop() == 0


def test_init_makes_a_new_vault_once_the_keys_are_moved_aside(fresh):
    fresh.start()
    fresh.put("cleo", age="29")
    assert fresh.stop() == 0
    keys = fresh.data_dir / "keys"
    old_key = (keys / "master-1.key").read_bytes()
    shutil.rmtree(fresh.data_dir / "db")
    aside = fresh.data_dir.parent / "old-keys"
    aside.mkdir()
    (keys / "master-1.key").rename(aside / "master-1.key")
    fresh.start("--init")
    assert fresh.stop() == 0
    assert "new store" in fresh.log()
    assert (keys / "master-1.key").read_bytes() != old_key
    fresh.start()                   # later starts need no flag
    with pytest.raises(grpc.RpcError) as e:
        fresh.get("cleo")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert fresh.stop() == 0


def test_production_new_vault_needs_init(fresh, tmp_path):
    """--config: no store and no key is a new vault only with --init."""
    fresh.start()                   # for a config, policy, pepper and token
    assert fresh.stop() == 0
    prod = tmp_path / "prod"
    (prod / "keys").mkdir(parents=True, mode=0o700)
    for f in ("vaultd.conf", "policy.conf", "dev-token", "keys/token-pepper"):
        shutil.copy2(fresh.data_dir / f, prod / f)
    fresh.data_dir = prod           # the snapshots and the token are prod's now
    conf = prod / "vaultd.conf"
    refused(fresh, lambda: spawn_config(fresh, conf), "start once with --init")
    assert not (prod / "db").exists()
    spawn_config(fresh, conf, "--init")
    wait_serving(fresh)
    fresh.put("dora", age="50")
    assert fresh.stop() == 0
    assert (prod / "keys" / "master-1.key").exists()
    spawn_config(fresh, conf)
    wait_serving(fresh)
    assert fresh.get("dora") == {"age": "50"}
    assert fresh.stop() == 0


# ------------------------------------------------- point 4: truncated store

def test_truncated_store_refused(fresh):
    fresh.start()
    put_many(fresh, 300)
    assert fresh.stop() == 0
    data = fresh.data_dir / "db" / "data.mdb"
    whole = data.read_bytes()
    page = os.sysconf("SC_PAGE_SIZE")
    assert len(whole) > 8 * page
    for size in (len(whole) // 2, len(whole) - page, page):
        data.write_bytes(whole[:size])
        text = refused(fresh, fresh.spawn, "data.mdb is shorter than the store "
                       "it holds", "it was truncated; restore it from a backup")
        assert f"({size} of " in text, text
    data.write_bytes(whole)
    fresh.start()
    assert fresh.get("c7") == {"age": "27", "device": "mobile", "zip": "10007"}
    assert fresh.stop() == 0


# --------------------------------------------------- point 8: prompt stop

def test_sigterm_with_idle_connections_exits_promptly(daemon):
    channels = [grpc.insecure_channel(daemon.addr) for _ in range(10)]
    try:
        for ch in channels:
            assert daemon.call("/grpc.health.v1.Health/Check",
                               health_pb.HealthCheckRequest(),
                               health_pb.HealthCheckResponse, token=None,
                               channel=ch).status == \
                health_pb.HealthCheckResponse.SERVING
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        rc = daemon.wait_exit(timeout=30)
        took = time.monotonic() - t0
    finally:
        for ch in channels:
            ch.close()
    assert rc == 0, daemon.log()
    assert took < 1.0, f"{took:.2f} s to stop with 10 idle connections"
    assert "grace period over" not in daemon.log()


def test_sigterm_gives_a_call_in_flight_its_grace(fresh):
    """A FetchFeatures stream held up by its client's flow control (an HTTP/2
    window of 0) is a call in flight: SIGTERM waits for it."""
    fresh.start()
    put_many(fresh, 20)
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "\nshutdown_grace_ms = 3000;\n")
    fresh.start()
    s = rawh2.connect(fresh.port)
    # SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA until a WINDOW_UPDATE.
    s.sendall(rawh2.frame(4, 0, 0, struct.pack(">HI", 4, 0)))
    req = pb.FetchFeaturesRequest(purpose="training", dataset_id="grace-1",
                                  attributes=["age", "device"], batch_size=5)
    s.sendall(rawh2.headers(1, b"/vault.v1.Features/FetchFeatures",
                            [(b"authorization", f"Bearer {fresh.token}".encode())])
              + rawh2.message(1, req.SerializeToString()))
    frames = rawh2.read_frames(s, 5, until=lambda fs: any(
        f[0] == 1 and f[2] == 1 for f in fs))      # the response headers
    assert any(f[0] == 1 and f[2] == 1 for f in frames), frames
    t0 = time.monotonic()
    fresh.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert fresh.proc.poll() is None, "stopped with a call in flight:\n" + fresh.log()
    # The client reads: the call finishes, with its rows, within the grace.
    s.sendall(rawh2.frame(8, 0, 0, struct.pack(">I", 1 << 20)) +
              rawh2.frame(8, 0, 1, struct.pack(">I", 1 << 20)))
    s.sendall(rawh2.frame(4, 0, 0, struct.pack(">HI", 4, 1 << 20)))
    frames += rawh2.read_frames(s, 5, until=lambda fs: rawh2.ended(fs, 1))
    s.close()
    assert rawh2.ended(frames, 1)
    assert not any(f[0] == 3 and f[2] == 1 for f in frames), "reset"
    assert sum(len(f[3]) for f in frames if f[0] == 0 and f[2] == 1) > 100
    assert fresh.wait_exit(timeout=30) == 0
    assert time.monotonic() - t0 < 3.0
    assert "grace period over" not in fresh.log()
