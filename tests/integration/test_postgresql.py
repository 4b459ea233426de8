"""The PostgreSQL backend against a real PostgreSQL 15 on loopback: the same
API as on LMDB, what reaches PostgreSQL's files (data directory and WAL:
only refs, wrapped keys and ciphertext), what a lost or refused database
gives, and that a pg_basebackup copy taken before a deletion cannot bring
the consumer back once its master key version is destroyed."""
import os
import secrets
import signal
import subprocess
import time

import grpc
import pytest

from conftest import Daemon, pb, running, write_canaries
from pgserver import PgCopy, PgServer, backend_conf
from test_rotation import (delete_a_victim, destroy, remaining_keys, residue,
                           rotate, versions)


@pytest.fixture(scope="module")
def pg():
    server = PgServer.scratch().start()
    yield server
    server.stop()
    server.remove()


def pg_daemon(tmp_path, pg, name="vault"):
    _, info = pg.new_database()
    return Daemon(tmp_path / name, extra_conf=backend_conf(info))


@pytest.fixture
def pgd(tmp_path, pg):
    yield from running(pg_daemon(tmp_path, pg))


def test_every_call_family_works(pgd):
    pgd.put("ann", email="ann@example.com", age="31", device="mobile")
    assert pgd.get("ann") == {"email": "ann@example.com", "age": "31",
                              "device": "mobile"}
    pgd.put("ann", email="ann@new.example.com")
    assert pgd.get("ann", ["email"]) == {"email": "ann@new.example.com"}
    with pytest.raises(grpc.RpcError) as e:
        pgd.put("ann", shoe_size="44")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    first = pgd.delete("ann", request_id="del-ann-1")
    # A retried deletion (same request id) gets the same receipt back.
    assert pgd.delete("ann", request_id="del-ann-1") == first
    with pytest.raises(grpc.RpcError) as e:
        pgd.get("ann")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # The audit chain, kept in PostgreSQL, verifies end to end.
    v = pgd.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                 pb.VerifyAuditResponse)
    assert v.ok and v.entries > 5, v


def test_data_survives_restart_of_vaultd_and_of_postgresql(tmp_path, pg):
    d = pg_daemon(tmp_path, pg)
    d.start()
    try:
        for i in range(20):
            d.put(f"c{i}", zip=f"{i:05d}")
        assert d.stop() == 0
        pg.stop()
        pg.start()
        d.start()
        for i in range(20):
            assert d.get(f"c{i}", ["zip"]) == {"zip": f"{i:05d}"}
    finally:
        if d.proc is not None:
            d.stop()


def test_no_plaintext_in_postgresql_files_or_logs(tmp_path, pg):
    d = pg_daemon(tmp_path, pg)
    d.start()
    written = write_canaries(d, 30)
    assert d.stop() == 0
    # Every page and WAL record on disk, not only what a query returns.
    pg.psql("CHECKPOINT")
    blobs = list(pg.files())
    assert any("pg_wal" in str(p) for p, _ in blobs)
    local = [(p, p.read_bytes()) for p in d.data_dir.rglob("*")
             if p.is_file() and p.name != "dev-token"]
    log = d.log().encode()
    for s in written:
        needle = s.encode()
        for path, data in blobs + local:
            assert needle not in data, f"{s!r} found in {path}"
        assert needle not in log


def test_conninfo_password_is_never_logged(tmp_path, pg):
    # Trust authentication ignores the password; vaultd must still keep it
    # out of its log, whatever happens.
    canary = "pw" + secrets.token_hex(10)
    _, info = pg.new_database()
    d = Daemon(tmp_path / "vault",
               extra_conf=backend_conf(f"{info} password={canary}"))
    d.start()
    d.put("x", zip="1")
    assert d.stop() == 0
    bad = Daemon(tmp_path / "bad", extra_conf=backend_conf(
        f"host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2 "
        f"password={canary}"))
    bad.prepare_conf()
    with open(bad.data_dir / "vaultd.conf", "a") as f:
        f.write("postgresql_connect_timeout_s = 2;\n")
    bad.spawn()
    rc = bad.wait_exit(timeout=60)
    assert rc != 0
    text = d.log() + bad.log()
    assert canary not in text
    assert "PostgreSQL" in bad.log() or "postgresql" in bad.log(), bad.log()


def test_maintenance_commands_refuse_a_postgresql_store(tmp_path, pg):
    d = pg_daemon(tmp_path, pg)
    d.start()
    d.put("x", zip="1")
    assert d.stop() == 0
    for flag in ("--check", "--compact", "--migrate"):
        out = subprocess.run([os.environ.get("VAULTD", "vaultd"), "--dev",
                              "--data-dir", str(d.data_dir), flag],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0
        assert "PostgreSQL" in out.stderr + out.stdout, out.stderr


def test_writes_fail_cleanly_while_postgresql_is_down_then_recover(tmp_path, pg):
    d = pg_daemon(tmp_path, pg)
    d.start()
    try:
        d.put("before", zip="11111")
        pg.stop()
        with pytest.raises(grpc.RpcError) as e:
            d.put("during", zip="22222")
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED)
        assert "22222" not in (e.value.details() or "")
        assert d.proc.poll() is None, "vaultd must outlive its database"
        pg.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                d.put("after", zip="33333")
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, d.log()
                time.sleep(0.5)
        assert d.get("before", ["zip"]) == {"zip": "11111"}
        assert d.get("after", ["zip"]) == {"zip": "33333"}
    finally:
        if d.proc is not None:
            d.stop()


def test_basebackup_copy_cannot_bring_back_a_deleted_consumer(tmp_path, pg):
    """The residue test of the LMDB backend, on PostgreSQL: a pg_basebackup
    copy taken after a deletion still holds the consumer's wrapped DEK under
    master version 1; once version 1 is destroyed, nothing in the copy opens
    with any key that remains, and vaultd refuses to start on the copy."""
    db, info = pg.new_database()
    d = Daemon(tmp_path / "vault", extra_conf=backend_conf(info) +
               "\njanitor_interval_ms = 3600000;\n")
    d.start()
    ref = bytes.fromhex(delete_a_victim(d, 10).consumer_ref)
    pg.psql("CHECKPOINT")
    copy = pg.basebackup("basebackup")
    key1 = (d.data_dir / "keys" / "master-1.key").read_bytes()
    assert residue(copy, ref, {1: key1}) >= 1

    progress = rotate(d)
    assert progress[-1].done and progress[-1].new_version == 2
    destroyed = destroy(d, 1)
    assert destroyed.version == 1
    assert versions(d)[1].state == "destroyed"
    assert d.stop() == 0
    remaining = remaining_keys(d)
    assert list(remaining) == [2]
    assert residue(copy, ref, remaining) == 0

    # The copy, started as a server of its own, does not open.
    server = PgCopy(copy).start()
    try:
        conf = d.data_dir / "vaultd.conf"
        conf.write_text(conf.read_text().replace(
            info, f"{server.conninfo.replace('dbname=postgres', '')} "
            f"dbname={db}"))
        d.spawn()
        assert d.wait_exit() != 0
        assert "master key version 1 is missing" in d.log()
    finally:
        server.stop()


def test_a_new_replica_joins_from_an_empty_local_directory(tmp_path, pg):
    """A replica started on a fresh machine has no local directory yet: it
    makes one for its own files (the audit journal) and serves the vault."""
    a = pg_daemon(tmp_path, pg)
    a.start()
    try:
        a.put("shared", zip="44444")
        conf = a.data_dir / "vaultd.conf"
        b_conf = a.data_dir / "replica-b.conf"
        b_conf.write_text(conf.read_text()
                          .replace('store_dir = "db";', 'store_dir = "local-b";')
                          .replace('replica_name = "r1";', 'replica_name = "b";'))
        assert not (a.data_dir / "local-b").exists()
        b = Daemon(a.data_dir)
        b.log_path = tmp_path / "b.log"
        b.spawn = lambda *extra, listen=None: _spawn_config(b, b_conf)
        b.start()
        try:
            assert b.get("shared", ["zip"]) == {"zip": "44444"}
            assert (a.data_dir / "local-b").is_dir()
        finally:
            assert b.stop() == 0
    finally:
        assert a.stop() == 0


def _spawn_config(d, conf):
    d.log_file = open(d.log_path, "ab")
    d.proc = subprocess.Popen([os.environ.get("VAULTD", "vaultd"), "--config",
                               str(conf), "--listen", d.addr],
                              stdout=d.log_file, stderr=subprocess.STDOUT)
    return d.proc


def test_backup_call_names_postgresqls_tools(pgd, tmp_path):
    out = pgd.ctl("backup", "--out", str(tmp_path / "b"))
    assert out.returncode != 0
    assert "UNIMPLEMENTED" in out.stderr and "pg_basebackup" in out.stderr, \
        out.stderr
    assert not (tmp_path / "b").exists() or (tmp_path / "b").stat().st_size == 0


def test_two_replicas_starting_a_new_vault_at_once_make_one(tmp_path, pg):
    """Two replicas started together in dev mode (which makes a vault where
    there is none) on one empty database and one keys directory: one makes
    the vault, the other opens it. It must not make vault keys of its own,
    which would leave the first serving with keys the store does not hold."""
    for attempt in range(3):
        a = pg_daemon(tmp_path, pg, name=f"vault{attempt}")
        a.prepare_conf()
        shared = a.data_dir.resolve()
        bdir = tmp_path / f"b{attempt}"
        bdir.mkdir()
        (bdir / "vaultd.conf").write_text(
            (a.data_dir / "vaultd.conf").read_text()
            .replace('keys_dir = "keys";', f'keys_dir = "{shared}/keys";')
            .replace('policy_file = "policy.conf";',
                     f'policy_file = "{shared}/policy.conf";')
            .replace('token_pepper_file = "keys/token-pepper";',
                     f'token_pepper_file = "{shared}/keys/token-pepper";')
            .replace('replica_name = "r1";', 'replica_name = "b";'))
        b = Daemon(a.data_dir)          # a's dev-token: the same vault
        b.log_path = tmp_path / f"b{attempt}.log"

        def spawn_b(*extra, listen=None, b=b, bdir=bdir):
            b.log_file = open(b.log_path, "ab")
            b.proc = subprocess.Popen(
                [os.environ.get("VAULTD", "vaultd"), "--dev", "--data-dir",
                 str(bdir), "--listen", b.addr],
                stdout=b.log_file, stderr=subprocess.STDOUT)
            return b.proc
        b.spawn = spawn_b
        a.spawn()
        b.spawn()
        try:
            for d in (a, b):
                deadline = time.monotonic() + 60
                while True:
                    assert d.proc.poll() is None, d.log()
                    try:
                        if d.health() == 1:
                            break
                    except grpc.RpcError:
                        pass
                    assert time.monotonic() < deadline, d.log()
                    time.sleep(0.1)
            a.put(f"from-a-{attempt}", zip="1")
            b.put(f"from-b-{attempt}", zip="2")
            assert b.get(f"from-a-{attempt}", ["zip"]) == {"zip": "1"}
            assert a.get(f"from-b-{attempt}", ["zip"]) == {"zip": "2"}
        finally:
            for d in (a, b):
                if d.proc is not None:
                    d.stop()
