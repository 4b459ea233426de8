"""Key files and start-up writes (issue 12, defects 1, 2 and 9).

1. No crash point of DestroyMasterKey leaves a usable key of a destroyed
   version: the file is wiped before "destroyed" is committed, and every
   start wipes files of destroyed versions, so an old backup of the store
   cannot be opened with the keys directory that outlived the destruction.
2. Key files appear whole (temporary name, fsync, rename); an unusable key
   file of a version the store never used is set aside, not fatal.
9. A refused start changes no file; an interrupted first --dev start
   leaves complete files only.

The crash-point tests need a build with crash points (scripts/build
--crash: VAULTD=$PWD/build-crash/vaultd); against another build they skip.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import grpc
import pytest

from conftest import VAULTD, Daemon, pb
from test_deletion import key_status
from test_rotation import destroy, rotate, versions

HAS_CRASH_POINTS = b"vaultd: crash point" in pathlib.Path(VAULTD).read_bytes()
needs_crash_points = pytest.mark.skipif(
    not HAS_CRASH_POINTS, reason="vaultd built without crash points "
    "(scripts/build --crash)")


# ------------------------------------------------------------------ helpers

def crash(d, monkeypatch, point, action):
    """Starts d with VAULT_CRASH_AT=point, runs action, which must kill it there."""
    monkeypatch.setenv("VAULT_CRASH_AT", point)
    try:
        d.start()
    finally:
        monkeypatch.delenv("VAULT_CRASH_AT")
    with pytest.raises(grpc.RpcError):
        action()
    rc = d.wait_exit(timeout=30)
    assert rc == -signal.SIGKILL, d.log()
    assert f"vaultd: crash point {point.split(':')[0]}" in d.log()


def crash_at_start(d, monkeypatch, point):
    """Starts d with VAULT_CRASH_AT=point; it must die there before serving."""
    monkeypatch.setenv("VAULT_CRASH_AT", point)
    try:
        d.spawn()
    finally:
        monkeypatch.delenv("VAULT_CRASH_AT")
    rc = d.wait_exit(timeout=30)
    assert rc == -signal.SIGKILL, d.log()
    assert f"vaultd: crash point {point.split(':')[0]}" in d.log()


def refused(d, *extra, listen=None):
    """Starts d, which must exit non-zero without serving; returns its new log."""
    before = len(d.log())
    d.spawn(*extra, listen=listen)
    rc = d.wait_exit(timeout=60)
    assert rc != 0, d.log()
    return d.log()[before:]


def snapshot(root):
    """Every path under root with its bytes and mtime (lock.mdb: LMDB's
    reader table, rewritten by any open, holds no data)."""
    out = {}
    for p in sorted(pathlib.Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        if p.name == "lock.mdb":
            out[rel] = "lock"
        elif p.is_dir():
            out[rel] = ("dir", p.stat().st_mtime_ns)
        else:
            out[rel] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def assert_unchanged(before, after):
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert (added, removed, changed) == ([], [], [])


def wait_for(pred, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    assert pred()


def keys_dir(d):
    return d.data_dir / "keys"


# ------------------------------------------------------------- defect 1

def prepare_destroy(d):
    """Consumers under v1, a backup of the store holding them all, then c1
    deleted (epoch 1) and every DEK rotated to v2. Returns the backup."""
    d.start()
    for i in range(5):
        d.put(f"c{i}", age=str(30 + i))
    assert d.stop() == 0
    backup = d.data_dir.parent / "db-backup"
    shutil.copytree(d.data_dir / "db", backup)
    d.start()
    assert d.delete("c1", request_id="dsr-c1").epoch == 1
    assert rotate(d)[-1].done
    assert d.stop() == 0
    return backup


def check_destroyed(d, backup):
    """v1 destroyed for good: its file gone, and the old backup refused."""
    d.start()
    assert not (keys_dir(d) / "master-1.key").exists()
    assert not [p for p in keys_dir(d).iterdir() if p.name.startswith("master-1.")]
    wait_for(lambda: versions(d)[1].state == "destroyed")
    assert d.get("c0") == {"age": "30"}
    with pytest.raises(grpc.RpcError) as e:
        d.get("c1")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        destroy(d, 1)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert d.stop() == 0
    # The old backup, with the keys directory as it is now.
    shutil.move(d.data_dir / "db", d.data_dir.parent / "db-current")
    shutil.copytree(backup, d.data_dir / "db")
    log = refused(d)
    assert "master key version 1 is missing" in log, log


@pytest.mark.lmdb_only  # checks against a Backup (LMDB only)
def test_destroyed_key_file_left_behind_is_wiped_at_start(fresh):
    """What a crash after the commit left before the fix: the key file of a
    destroyed version. The next start wipes it; the old backup is refused."""
    backup = prepare_destroy(fresh)
    saved = (keys_dir(fresh) / "master-1.key").read_bytes()
    fresh.start()
    destroy(fresh, 1)
    assert fresh.stop() == 0
    leftover = keys_dir(fresh) / "master-1.key"
    leftover.write_bytes(saved)
    leftover.chmod(0o600)
    fresh.start()
    assert "was wiped and removed" in fresh.log()
    assert fresh.stop() == 0
    check_destroyed(fresh, backup)


@needs_crash_points
@pytest.mark.lmdb_only  # checks against a Backup (LMDB only)
@pytest.mark.parametrize("point", ["destroy.before_wipe", "destroy.after_unlink",
                                   "destroy.after_commit"])
def test_crash_during_destroy_leaves_no_usable_key(fresh, monkeypatch, point):
    backup = prepare_destroy(fresh)
    crash(fresh, monkeypatch, point, lambda: destroy(fresh, 1))
    check_destroyed(fresh, backup)


# ------------------------------------------------------------- defect 2

def test_stray_empty_key_file_is_set_aside(fresh):
    fresh.start()
    fresh.put("a", age="40")
    assert fresh.stop() == 0
    stray = keys_dir(fresh) / "master-3.key"
    stray.touch(mode=0o600)
    fresh.start()
    assert "set aside" in fresh.log()
    assert not stray.exists()
    aside = [p for p in keys_dir(fresh).iterdir()
             if p.name.startswith("master-3.key.unusable-")]
    assert len(aside) == 1 and aside[0].stat().st_size == 0
    assert fresh.get("a") == {"age": "40"}
    assert rotate(fresh)[-1].done
    assert fresh.get("a") == {"age": "40"}
    assert fresh.stop() == 0


def test_unusable_key_file_of_a_used_version_stays_fatal(fresh):
    fresh.start()
    fresh.put("a", age="40")
    assert fresh.stop() == 0
    key = keys_dir(fresh) / "master-1.key"
    saved = key.read_bytes()
    key.write_bytes(b"")
    before = snapshot(fresh.data_dir)
    log = refused(fresh)
    assert "in use by the store" in log, log
    assert_unchanged(before, snapshot(fresh.data_dir))
    key.write_bytes(saved)
    fresh.start()
    assert fresh.get("a") == {"age": "40"}
    assert fresh.stop() == 0


@needs_crash_points
@pytest.mark.parametrize("point", ["keyfile.after_create", "keyfile.before_rename",
                                   "rotate.before_activate", "rotate.after_activate"])
def test_crash_during_rotation_start(fresh, monkeypatch, point):
    fresh.start()
    for i in range(3):
        fresh.put(f"r{i}", age=str(20 + i))
    assert fresh.stop() == 0
    crash(fresh, monkeypatch, point, lambda: rotate(fresh))
    # No short key file under its final name; a .tmp the start removes.
    assert not [p for p in keys_dir(fresh).glob("master-*.key")
                if p.stat().st_size != 32]
    fresh.start()
    assert not list(keys_dir(fresh).glob("*.tmp"))
    assert rotate(fresh)[-1].done
    st = key_status(fresh)
    assert st.active_version >= 2 and not st.rotation_in_progress
    assert versions(fresh)[1].dek_count == 0
    assert fresh.get("r1") == {"age": "21"}
    assert fresh.stop() == 0
    fresh.start()
    assert fresh.get("r2") == {"age": "22"}
    assert fresh.stop() == 0


# ------------------------------------------------------------- defect 9

def started_and_stopped(d):
    d.start()
    for i in range(3):
        d.put(f"s{i}", age=str(50 + i))
    assert d.stop() == 0
    return snapshot(d.data_dir)


def test_start_on_a_busy_port_changes_nothing(fresh):
    before = started_and_stopped(fresh)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        log = refused(fresh, listen=f"127.0.0.1:{s.getsockname()[1]}")
    assert "requests applied" not in log, log
    assert_unchanged(before, snapshot(fresh.data_dir))
    fresh.start()
    assert fresh.get("s1") == {"age": "51"}
    assert fresh.stop() == 0


@pytest.mark.lmdb_only  # on another backend the harness writes the dev files first
def test_first_dev_start_on_a_busy_port_writes_nothing(fresh):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        fresh.spawn(listen=f"127.0.0.1:{s.getsockname()[1]}")
        assert fresh.wait_exit(timeout=60) != 0
    assert not fresh.data_dir.exists()
    assert "cannot listen" in fresh.log()


def test_start_with_bad_tls_files_changes_nothing(tmp_path):
    d = Daemon(tmp_path / "vault", tls=True)
    try:
        d.start()
        assert d.stop() == 0
        (d.data_dir / "tls" / "server.pem").write_text("not a certificate\n")
        before = snapshot(d.data_dir)
        log = refused(d)
        assert "requests applied" not in log, log
        assert_unchanged(before, snapshot(d.data_dir))
    finally:
        if d.proc is not None:
            d.proc.kill()
            d.proc.wait()


@pytest.mark.lmdb_only  # on another backend the harness writes the dev files first
def test_start_without_keys_directory_changes_nothing(fresh):
    started_and_stopped(fresh)
    moved = fresh.data_dir.parent / "keys-elsewhere"
    shutil.move(keys_dir(fresh), moved)
    before = snapshot(fresh.data_dir)
    log = refused(fresh)
    assert_unchanged(before, snapshot(fresh.data_dir))
    assert "no keys directory" in log, log
    shutil.move(moved, keys_dir(fresh))
    fresh.start()
    assert fresh.get("s0") == {"age": "50"}
    assert fresh.stop() == 0


def test_production_start_without_keys_directory_creates_no_store(fresh):
    started_and_stopped(fresh)
    conf = fresh.data_dir / "vaultd.conf"
    lines = [l for l in conf.read_text().splitlines()
             if l.split("=")[0].strip() not in ("store_dir", "keys_dir")]
    conf.write_text("\n".join(lines + ['store_dir = "db2";',
                                       'keys_dir = "keys2";']) + "\n")
    (fresh.data_dir / "db2").mkdir(mode=0o700)     # a new, empty store
    before = snapshot(fresh.data_dir)
    out = subprocess.run([VAULTD, "--config", str(conf), "--listen", fresh.addr],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "keys directory" in out.stdout + out.stderr
    assert_unchanged(before, snapshot(fresh.data_dir))


@needs_crash_points
@pytest.mark.parametrize("point", ["dev.after_create", "dev.before_rename",
                                   "dev.after_config", "keyfile.after_create",
                                   "keyfile.before_rename", "dev.after_pepper",
                                   "dev.after_policy", "keyfile.after_create:2"])
def test_first_dev_start_killed_then_started(fresh, monkeypatch, point):
    crash_at_start(fresh, monkeypatch, point)
    for p in fresh.data_dir.rglob("*"):
        if p.is_file() and not p.name.endswith(".tmp") and p.name != "lock.mdb":
            assert p.stat().st_size > 0, p
    fresh.start()
    fresh.put("x", age="33")
    assert fresh.get("x") == {"age": "33"}
    assert fresh.stop() == 0
    assert not list(fresh.data_dir.rglob("*.tmp"))


@needs_crash_points
def test_first_dev_tls_start_killed_then_started(tmp_path, monkeypatch):
    d = Daemon(tmp_path / "vault", tls=True)
    try:
        crash_at_start(d, monkeypatch, "dev.before_tls_rename")
        assert not (d.data_dir / "tls").exists()
        d.start()                   # served over mTLS with the new files
        assert d.delete("t", request_id="dsr-t").found is False
        assert d.stop() == 0
        assert not (d.data_dir / "tls.new").exists()
    finally:
        if d.proc is not None:
            d.proc.kill()
            d.proc.wait()
