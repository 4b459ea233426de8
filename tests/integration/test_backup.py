"""Backups that honour deletion, compaction and store format migrations
(issue 14, points 7 to 9): a real daemon, vaultctl, vaultd --restore,
--compact and --migrate."""
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import time

import grpc
import lmdb
import pytest

from conftest import (ROOT, SANITIZER_MARKS, VAULTCTL, VAULTD, Daemon, pb,
                      _load_module)
from test_features import fetch, rows
from test_rotation import destroy, rotate

# These tests read or damage LMDB's own files, or use its tools.
pytestmark = pytest.mark.lmdb_only


def _admin_pb2():
    with tempfile.TemporaryDirectory(prefix="vault-admin-pb2-") as out:
        subprocess.run(["protoc", f"--python_out={out}", f"-I{ROOT / 'proto'}",
                        "vault/v1/admin.proto"], check=True)
        return _load_module("admin_pb2", f"{out}/vault/v1/admin_pb2.py")


admin = _admin_pb2()

ATTRS = ("age", "device", "income_band", "converted")
DEVICES = ("mobile", "desktop", "tablet", "tv", "other")


def consumer_id(i):
    return f"backup-consumer-{i:04d}@example.com"


def email(i):
    return f"secret-mailbox-{i:04d}@example.org"


def populate(d, n):
    d.put_many((consumer_id(i), dict(
        email=email(i), age=str(20 + i), device="mobile",
        income_band="middle", converted="true")) for i in range(n))


def sanitizer_clean(text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, text


def vaultd(*args, timeout=300):
    r = subprocess.run([VAULTD, *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    sanitizer_clean(r.stderr)
    return r


def tree(path):
    """Every file under path with its size, mode and mtime: to see that a
    refused command changed nothing."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def new_data_dir(tmp_path, src, name="restored"):
    """A new data directory holding a copy of src's master key files (what
    the keys directory of a restore must hold)."""
    dst = tmp_path / name
    (dst / "keys").mkdir(parents=True)
    os.chmod(dst, 0o700)
    os.chmod(dst / "keys", 0o700)
    for f in (src.data_dir / "keys").glob("master-*.key"):
        shutil.copy2(f, dst / "keys" / f.name)
    return dst


def get_code(d, cid):
    try:
        d.get(cid)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def export_code(d, cid):
    try:
        d.call("/vault.v1.Consumers/ExportConsumer",
               pb.ExportConsumerRequest(consumer_id=cid),
               pb.ExportConsumerResponse)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def verify_audit(d):
    return d.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                  pb.VerifyAuditResponse)


# --------------------------------------------------------------- restore

def test_restore_never_resurrects_a_deleted_consumer(fresh, tmp_path):
    d = fresh.start()
    n, gone = 12, (1, 4, 7)
    populate(d, n)
    before = rows(fetch(d, "training"))
    assert len(before) == n

    out = d.ctl("backup", "--out", str(tmp_path / "vault.backup"))
    assert out.returncode == 0, out.stderr
    backup = tmp_path / "vault.backup"
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    raw = backup.read_bytes()
    assert raw.startswith(b"vaultd-backup 1\n")
    for i in range(n):
        assert consumer_id(i).encode() not in raw
        assert email(i).encode() not in raw
    assert not list(tmp_path.glob("vault.backup.tmp-*"))

    for i in gone:
        assert d.delete(consumer_id(i)).found
    after_delete = rows(fetch(d, "training", dataset="ds-after"))
    assert len(after_delete) == n - len(gone)
    out = d.ctl("deletions", "export", "--out", str(tmp_path / "deletions"))
    assert out.returncode == 0, out.stderr
    export = (tmp_path / "deletions").read_text()
    assert stat.S_IMODE(os.stat(tmp_path / "deletions").st_mode) == 0o600
    assert export.count("\n") == 7 + len(gone)
    for i in range(n):
        assert consumer_id(i) not in export
    assert d.stop() == 0

    dst = new_data_dir(tmp_path, d)
    r = vaultd("--dev", "--data-dir", dst, "--restore", backup,
               "--deletions", tmp_path / "deletions")
    assert r.returncode == 0, r.stderr
    assert "re-applied 3 deletion(s)" in r.stderr
    assert stat.S_IMODE(os.stat(dst / "db" / "data.mdb").st_mode) == 0o600
    check = vaultd("--dev", "--data-dir", dst, "--check")
    assert check.returncode == 0, check.stdout + check.stderr

    restored = Daemon(dst)
    restored.start("--verify-audit")
    try:
        for i in range(n):
            want = grpc.StatusCode.NOT_FOUND if i in gone else grpc.StatusCode.OK
            assert get_code(restored, consumer_id(i)) == want, i
            assert export_code(restored, consumer_id(i)) == want, i
        assert restored.get(consumer_id(0), names=("email",)) == \
            {"email": email(0)}
        got = rows(fetch(restored, "training", dataset="ds-restored"))
        assert set(got) == set(after_delete)
        v = verify_audit(restored)
        assert v.ok and v.entries > 0
    finally:
        assert restored.stop() == 0
    assert "audit log intact" in restored.log()


def test_restore_without_the_deletion_export_is_refused(fresh, tmp_path):
    d = fresh.start()
    populate(d, 2)
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    assert d.stop() == 0
    dst = new_data_dir(tmp_path, d)
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b")
    assert r.returncode != 0 and "--deletions" in r.stderr
    assert tree(dst) == before


def test_restore_refuses_a_non_empty_store_and_changes_nothing(fresh, tmp_path):
    d = fresh.start()
    populate(d, 3)
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    assert d.ctl("deletions", "export", "--out",
                 str(tmp_path / "e")).returncode == 0
    assert d.stop() == 0
    before = tree(d.data_dir)
    r = vaultd("--dev", "--data-dir", d.data_dir, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "is not empty" in r.stderr
    assert tree(d.data_dir) == before


def test_restore_refuses_an_export_that_starts_after_the_backup(fresh, tmp_path):
    d = fresh.start()
    populate(d, 3)
    d.delete(consumer_id(0))
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    d.delete(consumer_id(1))
    d.delete(consumer_id(2))
    # Deletion 2 is after the backup; an export from after 2 misses it.
    assert d.ctl("deletions", "export", "--after", "2", "--out",
                 str(tmp_path / "e")).returncode == 0
    assert d.stop() == 0
    dst = new_data_dir(tmp_path, d)
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "needs every deletion from 2 on" in r.stderr
    assert tree(dst) == before


def test_restore_refuses_a_cut_deletion_export(fresh, tmp_path):
    d = fresh.start()
    populate(d, 3)
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    d.delete(consumer_id(0))
    d.delete(consumer_id(1))
    assert d.ctl("deletions", "export", "--out",
                 str(tmp_path / "e")).returncode == 0
    assert d.stop() == 0
    lines = (tmp_path / "e").read_text().splitlines(keepends=True)
    (tmp_path / "e").write_text("".join(lines[:-1]))      # the last one lost
    dst = new_data_dir(tmp_path, d)
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "it was cut" in r.stderr
    assert tree(dst) == before


def test_a_backup_older_than_the_kept_deletions_is_refused(fresh, tmp_path):
    """The deletion log is kept request_retention_s; once entries after a
    backup are dropped, that backup cannot be restored without bringing
    their consumers back."""
    d = fresh.start()
    populate(d, 3)
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    d.delete(consumer_id(0))
    assert d.stop() == 0
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "request_retention_s = 1;\n")
    time.sleep(1.1)          # the entry is older than the retention now
    d.start()                # the janitor's first pass expires it
    for _ in range(600):
        out = d.ctl("deletions", "export", "--out", str(tmp_path / "e"))
        assert out.returncode == 0, out.stderr
        if "expired_through 1\n" in (tmp_path / "e").read_text():
            break
        os.unlink(tmp_path / "e")
        time.sleep(0.1)
    assert "expired_through 1\n" in (tmp_path / "e").read_text()
    assert d.stop() == 0
    dst = new_data_dir(tmp_path, d)
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "retention dropped deletions through 1" in r.stderr
    assert tree(dst) == before


def test_restore_refuses_a_damaged_backup(fresh, tmp_path):
    d = fresh.start()
    populate(d, 3)
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    assert d.ctl("deletions", "export", "--out",
                 str(tmp_path / "e")).returncode == 0
    assert d.stop() == 0
    data = bytearray((tmp_path / "b").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "b").write_bytes(bytes(data))
    dst = new_data_dir(tmp_path, d)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "does not match its manifest's hash" in r.stderr
    assert not (dst / "db").exists()
    assert not list(dst.glob("db.restore-*"))


def test_a_backup_whose_key_versions_are_destroyed_cannot_be_restored(
        fresh, tmp_path):
    d = fresh.start()
    populate(d, 3)
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    assert rotate(d)[-1].done
    destroy(d, 1)
    assert d.ctl("deletions", "export", "--out",
                 str(tmp_path / "e")).returncode == 0
    assert d.stop() == 0
    dst = new_data_dir(tmp_path, d)
    assert sorted(p.name for p in (dst / "keys").iterdir()) == ["master-2.key"]
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "crypto-shredded" in r.stderr
    assert tree(dst) == before


def test_backup_and_export_need_the_backup_role(fresh, tmp_path):
    fresh.start()
    assert fresh.stop() == 0
    token = fresh.add_principal("ops", ["privacy"], ["*"])
    d = fresh.start()
    for method, req, resp in (
            ("/vault.v1.Admin/Backup", admin.BackupRequest(), admin.BackupChunk),
            ("/vault.v1.Admin/ExportDeletions", admin.ExportDeletionsRequest(),
             admin.DeletionBatch)):
        with d.channel() as ch:
            with pytest.raises(grpc.RpcError) as e:
                list(d.stream(ch, method, req, resp, token=token))
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    tf = tmp_path / "ops-token"
    tf.write_text(token)
    os.chmod(tf, 0o600)
    out = subprocess.run([VAULTCTL, "--addr", d.addr, "--token-file", str(tf),
                          "backup", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 5, out.stderr
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob("b.tmp-*"))


@pytest.mark.parametrize("role", ["privacy", "keyadmin", "backup"])
def test_policy_keeps_admin_methods_to_the_backup_role(fresh, role):
    fresh.start()
    assert fresh.stop() == 0
    policy = fresh.data_dir / "policy.conf"
    text = policy.read_text()
    if role == "backup":        # the backup role naming another method
        text = text.replace('backup = ["/vault.v1.Admin/Backup"',
                            'backup = ["/vault.v1.Consumers/GetAttributes", '
                            '"/vault.v1.Admin/Backup"')
    else:
        text = text.replace(f"  {role} = [", f'  {role} = ["/vault.v1.Admin/Backup", ', 1)
    assert text != policy.read_text()
    policy.write_text(text)
    r = vaultd("--check-config", fresh.data_dir / "vaultd.conf")
    assert r.returncode == 1
    assert f"role '{role}'" in r.stderr


def test_restore_into_a_data_dir_without_keys_says_so(fresh, tmp_path):
    d = fresh.start()
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    assert d.ctl("deletions", "export", "--out",
                 str(tmp_path / "e")).returncode == 0
    assert d.stop() == 0
    dst = tmp_path / "empty"
    (dst / "keys").mkdir(parents=True)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1
    assert "holds no master key file" in r.stderr
    assert [p.name for p in dst.iterdir()] == ["keys"]


def test_backup_streams_a_manifest_with_the_key_versions(daemon):
    populate(daemon, 2)
    with daemon.channel() as ch:
        chunks = list(daemon.stream(ch, "/vault.v1.Admin/Backup",
                                    admin.BackupRequest(), admin.BackupChunk))
    assert chunks[-1].HasField("manifest") and not chunks[-1].data
    m = chunks[-1].manifest
    assert all(not c.HasField("manifest") for c in chunks[:-1])
    assert m.store_format == 4 and list(m.key_versions) == [1]
    assert m.data_bytes == sum(len(c.data) for c in chunks)
    assert m.deletion_seq == 1 and len(m.vault_id) == 32


def test_a_backup_the_client_abandons_ends_cleanly(daemon, tmp_path):
    """The copy runs into a pipe: a client gone mid-stream stops it, frees
    its snapshot, and the next backup and the shutdown go as usual."""
    daemon.put_many((consumer_id(i), {"email": "y" * 200 + email(i)})
                    for i in range(600))
    with daemon.channel() as ch:
        call = daemon.stream(ch, "/vault.v1.Admin/Backup",
                             admin.BackupRequest(), admin.BackupChunk)
        first = next(call)
        assert first.data and not first.HasField("manifest")
        call.cancel()
    out = daemon.ctl("backup", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    assert daemon.get(consumer_id(0), names=("email",))


def test_a_backup_is_audited(daemon, tmp_path):
    assert daemon.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    out = daemon.ctl("audit", "query", json=True)
    assert "/vault.v1.Admin/Backup" in out.stdout


# --------------------------------------------------------------- compaction

def test_compaction_shrinks_the_store_and_it_still_opens(fresh, tmp_path):
    d = fresh.start()
    n = 400
    d.put_many((consumer_id(i), dict(
        email=f"{i:04d}-" + "x" * 200 + "@example.org",
        age=str(20 + i % 80))) for i in range(n))
    req = pb.DeleteConsumersRequest(requests=[
        pb.DeleteConsumerRequest(consumer_id=consumer_id(i))
        for i in range(n) if i % 10 != 0])
    d.call("/vault.v1.Deletion/DeleteConsumers", req,
           pb.DeleteConsumersResponse, timeout=60)
    assert d.stop() == 0
    data = d.data_dir / "db" / "data.mdb"
    size = os.stat(data).st_size
    ino = os.stat(data).st_ino

    r = vaultd("--dev", "--data-dir", d.data_dir, "--compact")
    assert r.returncode == 0, r.stderr
    assert os.stat(data).st_size < size
    assert os.stat(data).st_ino != ino          # a new file, swapped in
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600
    leftovers = [p.name for p in (d.data_dir / "db").iterdir()
                 if p.name.startswith("data.mdb.")]
    assert leftovers == []

    d.start("--verify-audit")
    for i in range(n):
        want = grpc.StatusCode.OK if i % 10 == 0 else grpc.StatusCode.NOT_FOUND
        assert get_code(d, consumer_id(i)) == want
    assert verify_audit(d).ok
    assert d.stop() == 0
    assert vaultd("--dev", "--data-dir", d.data_dir, "--check").returncode == 0


def test_compaction_swaps_crash_safely(fresh):
    """The system calls of the swap, in order: the copy made aside with
    O_EXCL and fsynced, renamed over the data file, the directory synced,
    the old file wiped."""
    assert shutil.which("strace"), "strace is missing: run scripts/deps"
    d = fresh.start()
    populate(d, 3)
    assert d.stop() == 0
    trace = d.data_dir.parent / "compact.trace"
    r = subprocess.run(["strace", "-f", "-o", str(trace), "-e",
                        "trace=openat,fsync,link,rename,unlink",
                        VAULTD, "--dev", "--data-dir", str(d.data_dir),
                        "--compact"], capture_output=True, text=True,
                       timeout=300,
                       # LeakSanitizer cannot run under ptrace.
                       env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    assert r.returncode == 0, r.stderr
    sanitizer_clean(r.stderr)
    calls = [l.split(None, 1)[1] for l in trace.read_text().splitlines()
             if "data.mdb" in l or "fsync(" in l]

    def index(pred, start=0):
        for i in range(start, len(calls)):
            if pred(calls[i]):
                return i
        raise AssertionError(f"not found after {start}:\n" + "\n".join(calls))

    create = index(lambda c: "data.mdb.compact" in c and "O_EXCL" in c)
    synced = index(lambda c: c.startswith("fsync("), create)
    linked = index(lambda c: c.startswith("link(") and "data.mdb.old" in c,
                   synced)
    renamed = index(lambda c: c.startswith("rename(") and
                    "data.mdb.compact" in c, linked)
    index(lambda c: c.startswith("fsync("), renamed)
    index(lambda c: c.startswith("unlink(") and "data.mdb.old" in c, renamed)


def test_compaction_refuses_while_the_daemon_runs(daemon):
    data = daemon.data_dir / "db" / "data.mdb"
    ino = os.stat(data).st_ino
    r = vaultd("--dev", "--data-dir", daemon.data_dir, "--compact")
    assert r.returncode == 1
    assert "stop the daemon first" in r.stderr
    assert os.stat(data).st_ino == ino


# --------------------------------------------------------------- migration

def set_format(store_dir, version):
    env = lmdb.open(str(store_dir), max_dbs=16, subdir=True)
    meta = env.open_db(b"meta")
    with env.begin(write=True, db=meta) as txn:
        txn.put(b"store_format", struct.pack(">I", version))
    env.close()


def get_format(store_dir):
    env = lmdb.open(str(store_dir), max_dbs=16, subdir=True, readonly=True,
                    lock=False)
    meta = env.open_db(b"meta", create=False)
    with env.begin(db=meta) as txn:
        v = struct.unpack(">I", txn.get(b"store_format"))[0]
    env.close()
    return v


@pytest.mark.parametrize("found", [0, 5])
def test_a_store_of_another_format_is_refused_with_found_and_expected(
        fresh, found):
    d = fresh.start()
    populate(d, 1)
    assert d.stop() == 0
    set_format(d.data_dir / "db", found)
    data = d.data_dir / "db" / "data.mdb"
    before = os.stat(data)
    d.spawn()
    assert d.wait_exit() == 1
    assert (f"store format {found}; this vaultd reads 4..4; "
            in d.log())
    if found == 0:
        assert "run vaultd --migrate" in d.log()
    # --migrate has no step from 0, and never downgrades 5: nothing changes.
    r = vaultd("--dev", "--data-dir", d.data_dir, "--migrate")
    assert r.returncode == 1
    assert f"store format {found}" in r.stderr
    assert "nothing was changed" in r.stderr
    assert get_format(d.data_dir / "db") == found
    after = os.stat(data)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size,
                                                  before.st_mtime_ns)


def test_migrate_on_a_current_store_changes_nothing(fresh):
    d = fresh.start()
    populate(d, 1)
    assert d.stop() == 0
    r = vaultd("--dev", "--data-dir", d.data_dir, "--migrate")
    assert r.returncode == 0, r.stderr
    assert "store format 4 is current" in r.stdout
    d.start()
    assert d.get(consumer_id(0), names=("email",)) == {"email": email(0)}
    assert d.stop() == 0


@pytest.mark.parametrize("old", [1, 2, 3])
def test_an_older_format_store_is_refused_then_migrated(fresh, old):
    """Format 2 keeps lineage in stream order, which a vaultd of format 1
    would not read; format 3 has consumers with one values record, which a
    vaultd of format 2 would not read; format 4 binds a consumer record's
    header into its wrapped DEK, which a vaultd of format 3 would not
    open: an older store is refused until
    vaultd --migrate, and then serves as before, its old lineage still
    counted by deletions."""
    d = fresh.start()
    populate(d, 2)
    assert len(rows(fetch(d, "training", dataset="before",
                          attributes=["age"]))) == 2
    assert d.stop() == 0
    set_format(d.data_dir / "db", old)
    d.spawn()
    assert d.wait_exit() == 1
    assert (f"store format {old}; this vaultd reads 4..4; run vaultd "
            "--migrate") in d.log()
    r = vaultd("--dev", "--data-dir", d.data_dir, "--migrate")
    assert r.returncode == 0, r.stderr
    assert f"store migrated from format {old} to 4" in r.stdout
    assert get_format(d.data_dir / "db") == 4
    d.start()
    receipt = d.delete(consumer_id(0), request_id="after-migrate")
    assert list(receipt.affected_datasets) == ["before"]
    assert d.stop() == 0
