"""The store's write-ahead journal (issue 16, point 2; docs/architecture.md).

A single node journals every commit (wal.0/wal.1, a checkpoint in
wal.ckpt) and syncs LMDB only at checkpoints. Attacked here as a crash
would: kill -9 with LMDB's meta pages lost as a power cut can lose them, a
record cut short, a forged record, a data file swapped under the journal,
a key version destroyed just before the crash; and what stays on disk: a
clean stop leaves no journal, a deleted consumer's records are erased
within two checkpoints.
"""
import os
import shutil
import struct
import subprocess
import time

import grpc
import pytest

from conftest import VAULTD, Daemon, pb
from test_rotation import destroy, rotate, versions

pytestmark = pytest.mark.lmdb_only

MAGIC = 0x5657414C
HDR = 16
MAC = 32
PAGE = 4096


def db(d):
    return d.data_dir / "db"


def kill(d):
    d.proc.kill()
    d.proc.wait()
    d.proc = None
    d.log_file.close()


def lose_meta_pages(d):
    """LMDB's two meta pages as a power cut may leave them: not written."""
    with open(db(d) / "data.mdb", "r+b") as f:
        f.write(b"\0" * (2 * PAGE))


def records(data):
    """(offset, length, seq) of each well-formed record header in order."""
    out, off = [], 0
    while off + HDR <= len(data):
        magic, blen, seq = struct.unpack_from(">IIQ", data, off)
        if magic != MAGIC:
            break
        blen &= 0x7FFFFFFF     # the high bit: synced when written
        out.append((off, HDR + blen + MAC, seq))
        off += HDR + blen + MAC
    return out


def current_segment(d):
    """The segment that took appends after the last checkpoint."""
    ckpt = (db(d) / "wal.ckpt").read_bytes()
    return db(d) / f"wal.{struct.unpack_from('>I', ckpt, 36)[0]}"


def put_many(d, prefix, n):
    d.put_many((f"{prefix}-{i}", {"email": f"{prefix}-{i}@example.test",
                                  "zip": f"{i:05d}"}) for i in range(n))


def check_many(d, prefix, n):
    with d.channel() as ch:
        for i in range(n):
            assert d.get(f"{prefix}-{i}", ["email", "zip"], channel=ch) == {
                "email": f"{prefix}-{i}@example.test", "zip": f"{i:05d}"}


def refuse(d):
    """Starts d expecting a refusal; returns the log of that start."""
    before = len(d.log())
    d.spawn()
    assert d.wait_exit(timeout=60) != 0
    return d.log()[before:]


def test_acknowledged_writes_survive_lost_meta_pages(fresh):
    d = fresh.start()
    put_many(d, "a", 30)
    d.delete("a-3")
    d.call("/vault.v1.Consumers/SetConsent", pb.SetConsentRequest(
        consumer_id="a-4", purpose="research", granted=True, source="user"),
        pb.SetConsentResponse)
    d.put("a-5", zip="99999")
    kill(d)
    assert (db(d) / "wal.ckpt").exists()
    lose_meta_pages(d)
    # The offline check replays the journal too (it opens the vault).
    r = subprocess.run([VAULTD, "--dev", "--data-dir", str(d.data_dir),
                        "--check"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "journaled write(s) replayed" in r.stderr
    assert not (db(d) / "wal.ckpt").exists()
    d.start()
    for i in range(30):
        if i == 3:
            with pytest.raises(grpc.RpcError) as e:
                d.get("a-3", ["zip"])
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            continue
        want = {"email": f"a-{i}@example.test",
                "zip": "99999" if i == 5 else f"{i:05d}"}
        assert d.get(f"a-{i}", ["email", "zip"]) == want
    got = d.call("/vault.v1.Consumers/ExportConsumer",
                 pb.ExportConsumerRequest(consumer_id="a-4"),
                 pb.ExportConsumerResponse)
    assert any(c.purpose == "research" and c.granted for c in got.consents)
    assert d.ctl("audit", "verify").returncode == 0
    assert d.stop() == 0


def test_a_clean_stop_leaves_no_journal(daemon):
    put_many(daemon, "c", 10)
    assert any(b != 0 for i in (0, 1)
               for b in (db(daemon) / f"wal.{i}").read_bytes())
    assert daemon.stop() == 0
    assert not (db(daemon) / "wal.ckpt").exists()
    for i in (0, 1):
        assert (db(daemon) / f"wal.{i}").read_bytes().count(0) == \
            (db(daemon) / f"wal.{i}").stat().st_size


def test_a_deleted_consumers_records_are_erased(daemon):
    ref = bytes.fromhex(daemon.put("gone", email="gone@example.test",
                                   zip="12345").consumer_ref)

    def journal():
        return b"".join((db(daemon) / f"wal.{i}").read_bytes() for i in (0, 1))

    assert ref in journal()    # the test can fail: the record is there
    daemon.delete("gone")
    time.sleep(3.5)            # two checkpoints (1 s each) and their erasing
    assert ref not in journal()


def test_a_record_cut_short_is_dropped(fresh):
    d = fresh.start()
    put_many(d, "t", 5)
    kill(d)
    seg = current_segment(d)
    data = bytearray(seg.read_bytes())
    recs = records(bytes(data))
    assert recs, "no record after the checkpoint"
    off, n, seq = recs[-1]
    end = off + n
    # The next record's header and half its body: a crash mid-append.
    torn = struct.pack(">IIQ", MAGIC, 200, seq + 1) + bytes(range(100))
    data[end:end + len(torn)] = torn
    seg.write_bytes(bytes(data))
    d.start()
    assert "cut short by the crash" in d.log()
    check_many(d, "t", 5)
    assert d.stop() == 0


def test_a_forged_record_refuses_the_start(fresh):
    d = fresh
    for attempt in range(5):
        d.start()
        put_many(d, f"f{attempt}", 40)
        kill(d)
        seg = current_segment(d)
        recs = records(seg.read_bytes())
        if len(recs) >= 2:
            break
        d.start()
        assert d.stop() == 0
    else:
        pytest.fail("no two records after a checkpoint in five tries")
    data = bytearray(seg.read_bytes())
    off, n, _ = recs[0]
    data[off + HDR + 5] ^= 0x01
    seg.write_bytes(bytes(data))
    log = refuse(d)
    assert f"{seg.name} is damaged at byte {off}" in log
    assert f"truncate -s {off}" in log
    assert f"f{attempt}-" not in log and "example.test" not in log
    # As the message says: cut it there, losing what was journaled after.
    os.truncate(seg, off)
    d.start()
    assert d.ctl("audit", "verify").returncode == 0
    assert d.stop() == 0


def test_a_copied_store_directory_recovers(fresh):
    """A crashed store's directory copied whole (another disk, a VM
    snapshot): the journal belongs to the copy's data file, and recovers."""
    d = fresh.start()
    put_many(d, "cp", 5)
    kill(d)
    lose_meta_pages(d)
    copy = d.data_dir.parent / "copy"
    shutil.copytree(d.data_dir, copy)
    shutil.rmtree(d.data_dir)
    copy.rename(d.data_dir)
    d.start()
    check_many(d, "cp", 5)
    assert d.stop() == 0


def test_a_replaced_data_file_is_refused(fresh):
    d = fresh.start()
    put_many(d, "r", 3)
    assert d.stop() == 0
    data = db(d) / "data.mdb"
    backup = d.data_dir.parent / "data.mdb.backup"
    shutil.copy2(data, backup)
    d.start()
    put_many(d, "r2", 40)
    time.sleep(2.5)            # a checkpoint past the copy's state
    put_many(d, "r3", 5)
    kill(d)
    # An older copy of the store put back under a crashed vaultd's journal
    # (a copy of the checkpoint's own state would recover, correctly).
    shutil.copy2(backup, data)
    before = data.read_bytes()
    log = refuse(d)
    assert data.read_bytes() == before    # refused before writing anything
    assert "data.mdb was replaced" in log and "wal.ckpt" in log
    for f in ("wal.ckpt", "wal.0", "wal.1"):
        (db(d) / f).unlink()
    d.start()
    assert d.stop() == 0


def test_a_destroyed_key_version_then_a_crash(fresh):
    """The key file goes only after a checkpoint: the recovery opens the
    keyring as of it, and must not need the destroyed version."""
    d = fresh.start()
    put_many(d, "k", 10)
    assert rotate(d)[-1].done
    destroy(d, 1)
    assert not (d.data_dir / "keys" / "master-1.key").exists()
    d.put("k-after", zip="1")
    kill(d)
    lose_meta_pages(d)
    d.start()
    vs = versions(d)
    assert vs[1].state == "destroyed" and vs[2].state == "active"
    check_many(d, "k", 10)
    assert d.get("k-after", ["zip"]) == {"zip": "1"}
    assert d.stop() == 0
