"""Faults from outside: slow clients, signals, a damaged data file, a full
disk, a full map."""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import grpc
import pytest

from faultlib import (FaultDaemon, Ledger, check_invariants, delete_many,
                      preload, verify_audit)
import rawh2
from vault_integration_conftest import pb

CLEAN_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
               grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION,
               grpc.StatusCode.DATA_LOSS, grpc.StatusCode.NOT_FOUND)


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    fn(*args, **kw)
    return time.monotonic() - t0


# ----------------------------------------------------------- slow clients

FEATURES = ["age", "device", "income_band", "purchases_90d", "converted"]


def raw_stalled_call(d, path, body):
    """A call on a bare HTTP/2 connection whose client never reads: its
    window (INITIAL_WINDOW_SIZE 1024) is never opened again."""
    sock = socket.create_connection(("127.0.0.1", d.port))
    settings = struct.pack(">HI", 4, 1024)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
                 rawh2.frame(4, 0, 0, settings) + rawh2.frame(4, 1, 0, b""))
    sock.sendall(rawh2.headers(1, path, extra=[
        (b"authorization", f"Bearer {d.token}".encode())]) +
        rawh2.message(1, body))
    return sock

def test_stalled_stream_clients_do_not_block_unary_calls(tmp_path):
    d = FaultDaemon(tmp_path / "vault")
    ledger = Ledger()
    assert d.start_or_die() is not None, d.log()
    try:
        preload(d, ledger, 1500, consent_n=0)
        channels, calls = [], []
        # Streams nobody reads: big feature fetches and following deletion
        # watches, each on its own connection, so flow control stalls them.
        for i in range(6):
            ch = d.channel()
            channels.append(ch)
            calls.append(d.stream(ch, "/vault.v1.Features/FetchFeatures",
                                  pb.FetchFeaturesRequest(
                                      purpose="training", dataset_id=f"stall-{i}",
                                      attributes=FEATURES, batch_size=50),
                                  timeout=60))
        for i in range(6):
            ch = d.channel()
            channels.append(ch)
            calls.append(d.stream(ch, "/vault.v1.Deletion/WatchDeletions",
                                  pb.WatchDeletionsRequest(after_seq=0, follow=True),
                                  timeout=60))
        # And connections that never read at all: a 1 KB flow-control window
        # and a socket nobody reads, so the daemon's writes block for good.
        socks = []
        for i in range(8):
            # Feature fetches only: a deletion watch here has nothing to
            # send, so four taken watches stall nothing (with watches
            # alone the test fails every time; a CI run with half of each
            # once found no taken call with data).
            req = pb.FetchFeaturesRequest(
                purpose="training", dataset_id=f"raw-{i}", attributes=FEATURES,
                batch_size=20)
            socks.append(raw_stalled_call(d, b"/vault.v1.Features/FetchFeatures",
                                          req.SerializeToString()))
        # Twelve streams are open above and the principal may hold 16
        # (max_streams_per_principal): of these eight, the first four to
        # reach the daemon are taken and the rest refused. The connections
        # race, so look for a call that was taken and stalls, not for the
        # first one sent: data came, up to the window, and no end (reading
        # the socket opens no HTTP/2 window). A stream sends once its
        # snapshot is taken: allow for a slow machine.
        def has_data(fs):
            return any(f[0] == 0 and f[2] == 1 for f in fs)
        stalled, frames, waiting = None, [], list(socks)
        deadline = time.monotonic() + 20.0
        while stalled is None and waiting and time.monotonic() < deadline:
            for s in list(waiting):
                fs = rawh2.read_frames(s, 0.5, until=lambda fs: has_data(fs)
                                       or rawh2.ended(fs, 1))
                if has_data(fs):
                    stalled, frames = s, fs
                    break
                if rawh2.ended(fs, 1):
                    waiting.remove(s)       # refused: over the cap
        assert stalled is not None, "no stalled call was taken and sent data"
        frames += rawh2.read_frames(stalled, 0.5)
        assert not rawh2.ended(frames, 1), "the stalled call ended"
        worst = 0.0
        for i in range(60):
            worst = max(worst, timed(d.put, f"live-{i}", zip=str(i)))
            worst = max(worst, timed(d.get, f"live-{i}", names=["zip"]))
            if i % 10 == 0:
                worst = max(worst, timed(delete_many, d,
                                         [(f"pre-{i}", f"stall-del-{i}")]))
        # Each call answered within its deadline (10 s; a worker held by a
        # stalled stream would make them fail). Time is reported, not judged.
        print(f"slowest unary call behind stalled streams: {worst:.3f} s")
        assert verify_audit(d).ok
        for sock in socks:
            sock.close()
        for c in calls:
            c.cancel()
        for ch in channels:
            ch.close()
        assert d.stop() == 0, d.log()
    finally:
        if d.proc is not None:
            d.kill()


# ---------------------------------------------------------------- signals

def test_sigterm_with_idle_connections_exits_within_1s(tmp_path):
    """SIGTERM with idle client
    connections open must exit promptly (under 1 s), with status 0."""
    d = FaultDaemon(tmp_path / "vault")
    assert d.start_or_die() is not None, d.log()
    channels = []
    try:
        for i in range(8):
            ch = d.channel()
            channels.append(ch)
            d.call("/vault.v1.Consumers/PutAttributes",
                   pb.PutAttributesRequest(consumer_id=f"idle-{i}", attributes=[
                       pb.Attribute(name="zip", value="1")]),
                   pb.PutAttributesResponse, channel=ch)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        assert rc == 0, f"status {rc} after SIGTERM:\n{d.log()[-2000:]}"
        assert took < 1.0, f"SIGTERM with idle connections took {took:.2f} s"
        d.proc = None
        d.log_file.close()
        d.assert_sanitizer_clean()
    finally:
        for ch in channels:
            ch.close()
        if d.proc is not None:
            d.kill()


# ------------------------------------------------------ damaged data file

@pytest.fixture(scope="module")
def store_template(tmp_path_factory):
    """A stopped store with 300 consumers, and the values it holds."""
    d = FaultDaemon(tmp_path_factory.mktemp("tmpl") / "vault")
    ledger = Ledger()
    assert d.start_or_die() is not None, d.log()
    preload(d, ledger, 300, consent_n=10)
    assert d.stop() == 0, d.log()
    return d.data_dir, dict(ledger.value)


def copy_store(template, tmp_path):
    dst = tmp_path / "vault"
    shutil.copytree(template, dst)
    return FaultDaemon(dst)


def refused(d, timeout=30):
    """Starts d expecting a refusal; returns (status, log)."""
    if d.start_or_die(timeout=timeout) is not None:
        d.kill()
        raise AssertionError("vaultd started on a store it should refuse:\n"
                             + d.log()[-2000:])
    rc = d.reap()
    return rc, d.log()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_missing_or_truncated_data_file_refused(store_template, tmp_path,
                                                          damage):
    """A store whose keys exist but
    whose data.mdb is missing or truncated is refused (non-zero exit, a
    message naming the data file), never silently re-created empty; the
    refusal changes no file."""
    d = copy_store(store_template[0], tmp_path)
    mdb = d.data_dir / "db" / "data.mdb"
    if damage == "missing":
        mdb.unlink()
    else:
        with open(mdb, "r+b") as f:
            f.truncate(os.path.getsize(mdb) // 2)
    before = sorted((p.name, p.stat().st_size) for p in d.data_dir.rglob("*")
                    if p.is_file() and p.suffix != ".log")
    rc, log = refused(d)
    assert rc > 0, f"status {rc} (negative: a signal):\n{log[-2000:]}"
    assert "data.mdb" in log or "store" in log, log
    after = sorted((p.name, p.stat().st_size) for p in d.data_dir.rglob("*")
                   if p.is_file() and p.suffix != ".log")
    assert after == before, "a refused start changed files"


def test_empty_data_file_refused(store_template, tmp_path):
    """An empty data.mdb next to
    existing keys is refused, not taken for a new empty store."""
    d = copy_store(store_template[0], tmp_path)
    (d.data_dir / "db" / "data.mdb").write_bytes(b"")
    rc, log = refused(d)
    assert rc > 0, f"status {rc} (negative: a signal):\n{log[-2000:]}"


FLIP_TRIALS = int(os.environ.get("VAULT_FLIP_TRIALS", "12"))


@pytest.mark.parametrize("trial", range(FLIP_TRIALS))
def test_corrupted_data_file_never_crashes_nor_lies(store_template, tmp_path, trial):
    """Random byte flips (fixed seed) in data.mdb: vaultd refuses to start,
    or serves and answers each read with the stored value or an error: never
    a signal, never a wrong value."""
    template, values = store_template
    rng = random.Random(1200 + trial)
    d = copy_store(template, tmp_path)
    mdb = d.data_dir / "db" / "data.mdb"
    data = bytearray(mdb.read_bytes())
    used = len(data)
    for _ in range(rng.choice([1, 4, 32])):
        i = rng.randrange(used)
        data[i] ^= 1 << rng.randrange(8)
    mdb.write_bytes(bytes(data))
    took = d.start_or_die(timeout=30)
    if took is None:
        rc = d.reap()
        assert rc > 0, f"vaultd died with signal {-rc} on a corrupted store:\n" \
            + d.log()[-3000:]
        return
    try:
        ch = d.channel()
        for cid, want in values.items():
            try:
                r = d.call("/vault.v1.Consumers/GetAttributes",
                           pb.GetAttributesRequest(consumer_id=cid, names=["zip"],
                                                   purpose="service"),
                           pb.GetAttributesResponse, channel=ch)
            except grpc.RpcError as e:
                assert d.alive(), f"vaultd died reading {cid}:\n{d.log()[-3000:]}"
                assert e.code() in CLEAN_CODES, e
                continue
            got = {a.name: a.value for a in r.attributes}
            assert got.get("zip") in (want, None), \
                f"{cid}: served {got.get('zip')!r}, stored {want!r}"
        try:
            verify_audit(d)
        except grpc.RpcError as e:
            assert e.code() in CLEAN_CODES, e
        ch.close()
        assert d.alive(), f"vaultd died:\n{d.log()[-3000:]}"
        rc = d.stop(timeout=30)
        assert rc is not None and rc >= 0, f"status {rc}"
    finally:
        if d.proc is not None:
            d.kill()


# ----------------------------------------------------- full disk and map

def fill(d, ledger, prefix, limit=60000, threads=6):
    """Puts (in parallel) until refused; returns the status code that refused."""
    big = "x" * 240
    refused_with = []
    stop = threading.Event()

    def writer(t):
        ch = d.channel()
        try:
            for i in range(t, limit, threads):
                if stop.is_set():
                    return
                cid = f"{prefix}-{i}"
                ledger.put_begin(cid, str(i))
                try:
                    d.call("/vault.v1.Consumers/PutAttributes",
                           pb.PutAttributesRequest(consumer_id=cid, attributes=[
                               pb.Attribute(name="zip", value=str(i)),
                               pb.Attribute(name="email", value=f"{i}{big}"[:254])]),
                           pb.PutAttributesResponse, channel=ch)
                except grpc.RpcError as e:
                    refused_with.append(e.code())
                    stop.set()
                    return
                ledger.put_ack(cid, str(i))
                ledger.retire(cid)
        finally:
            ch.close()

    ts = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert d.alive(), f"vaultd died filling up:\n{d.log()[-3000:]}"
    assert refused_with, f"{limit} puts and still not full"
    return refused_with[0]


def full_checks(d, ledger, reads_may_fail=False, elsewhere=None):
    """On a full store: alive; reads answer the stored value (on a full
    disk they may be refused with a status: their audit entry cannot be
    written); deletion works (after the headroom fix); stopped and (moved to
    elsewhere, a roomier disk, if given) restarted: nothing acknowledged lost."""
    assert d.alive()
    for cid in list(ledger.value)[:50]:
        try:
            assert d.get(cid, names=["zip"]) == {"zip": ledger.value[cid]}
        except grpc.RpcError as e:
            assert reads_may_fail and e.code() in CLEAN_CODES, e
    pairs = ledger.take_for_deletion(5)
    try:
        ledger.delete_ack(pairs, delete_many(d, pairs))
        deletion = None
    except grpc.RpcError as e:
        assert d.alive() and e.code() in CLEAN_CODES, e
        deletion = f"deletion refused on a full store: {e.code()} {e.details()}"
    rc = d.stop()
    assert rc == 0, f"status {rc}:\n{d.log()[-2000:]}"
    if elsewhere is not None:
        shutil.copytree(d.data_dir, elsewhere)
        d = FaultDaemon(elsewhere)
    assert d.start_or_die() is not None, d.log()
    try:
        check_invariants(d, ledger, sample=300)
        assert d.stop() == 0, d.log()
    finally:
        if d.proc is not None:
            d.kill()
    assert deletion is None, deletion


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_refuses_cleanly_and_deletes(small_tmpfs):
    """A data dir on an 8 MB tmpfs, written until the disk is full: puts
    refused with a status (never a signal), reads answered or refused with
    a status, and deletion still
    works; the store moved to a roomier disk: nothing acknowledged lost."""
    d = FaultDaemon(small_tmpfs / "vault")
    ledger = Ledger()
    try:
        assert d.start_or_die() is not None, d.log()
        code = fill(d, ledger, "disk")
        assert code in CLEAN_CODES, code
        full_checks(d, ledger, reads_may_fail=True,
                    elsewhere=small_tmpfs.parent / "moved")
    finally:
        if d.proc is not None:
            d.kill()


def test_map_full_refuses_cleanly_and_deletes(tmp_path):
    """map_size_mb = 16, written until the map is full: RESOURCE_EXHAUSTED,
    acknowledged data readable, and deletion still works; after a restart nothing acknowledged is lost."""
    d = FaultDaemon(tmp_path / "vault")
    ledger = Ledger()
    try:
        assert d.start_or_die() is not None, d.log()
        assert d.stop() == 0
        conf = d.data_dir / "vaultd.conf"
        conf.write_text(conf.read_text() + "\nmap_size_mb = 16;\n")
        assert d.start_or_die() is not None, d.log()
        code = fill(d, ledger, "map")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, code
        full_checks(d, ledger)
    finally:
        if d.proc is not None:
            d.kill()
