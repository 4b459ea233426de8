"""An outside tester's attacks on backups that honour deletion (issue 14,
point 7): the backup's manifest and the deletion export are files on
backup storage, and they decide which deletions a restore applies again.
An edit that drops, renumbers or skips a deletion must be refused before
anything is written, or the restore brings a deleted consumer back."""
import hashlib
import signal
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import \
    Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (Encoding,
                                                           PublicFormat)

from test_backup import (consumer_id, new_data_dir, populate, tree, vaultd)
from test_backup_dos import wait_for

# These tests read or damage LMDB's own files, or use its tools.
pytestmark = pytest.mark.lmdb_only

HEADER = 4096


def scenario(fresh, tmp_path):
    """c0 deleted before the backup (seq 1), c1 and c2 after (seq 2, 3):
    a backup with deletion_seq 2 and an export of seqs 1..3."""
    d = fresh.start()
    populate(d, 4)
    assert d.delete(consumer_id(0)).found
    assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
    assert d.delete(consumer_id(1)).found
    assert d.delete(consumer_id(2)).found
    out = d.ctl("deletions", "export", "--out", str(tmp_path / "e"))
    assert out.returncode == 0, out.stderr
    assert d.stop() == 0
    return d


def export_parts(path):
    lines = path.read_text().splitlines()
    head = [l for l in lines if not l[0].isdigit()]
    recs = [l.split() for l in lines if l[0].isdigit()]
    return head, recs


def write_export(path, head, recs):
    head = [f"count {len(recs)}" if l.startswith("count ") else l
            for l in head]
    path.write_text("".join(l + "\n" for l in head) +
                    "".join(" ".join(r) + "\n" for r in recs))


def manifest(path):
    raw = path.read_bytes()
    text = raw[:HEADER].rstrip(b"\0").decode()
    return dict(l.split(" ", 1) for l in text.splitlines()), raw[HEADER:]


def write_manifest(path, fields, data):
    text = "".join(f"{k} {v}\n" for k, v in fields.items()).encode()
    path.write_bytes(text.ljust(HEADER, b"\0") + data)


def drop_a_later_deletion(tmp_path):
    head, recs = export_parts(tmp_path / "e")
    write_export(tmp_path / "e", head, [r for r in recs if r[0] != "2"])


def drop_the_last_deletion(tmp_path):
    head, recs = export_parts(tmp_path / "e")
    write_export(tmp_path / "e", head, recs[:-1])


def renumber_below_the_backup(tmp_path):
    """seq 1 (already in the backup) goes, 2 becomes 1: the restore skips
    it as older than the backup."""
    head, recs = export_parts(tmp_path / "e")
    recs = recs[1:]
    recs[0][0] = "1"
    write_export(tmp_path / "e", head, recs)


def raise_the_manifest_deletion_seq(tmp_path):
    fields, data = manifest(tmp_path / "b")
    fields["deletion_seq"] = "99"
    write_manifest(tmp_path / "b", fields, data)


def remove_the_signatures(tmp_path):
    fields, data = manifest(tmp_path / "b")
    fields.pop("signature", None)
    write_manifest(tmp_path / "b", fields, data)
    head, recs = export_parts(tmp_path / "e")
    write_export(tmp_path / "e", [l for l in head
                                  if not l.startswith("signature ")], recs)


TAMPERS = {
    drop_a_later_deletion: "deletion export does not match its signature",
    drop_the_last_deletion: "deletion export does not match its signature",
    renumber_below_the_backup:
        "deletion export does not match its signature",
    raise_the_manifest_deletion_seq:
        "manifest does not match its signature",
    remove_the_signatures: "signed",
}


@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda f: f.__name__)
def test_an_edited_manifest_or_export_is_refused(fresh, tmp_path, tamper):
    d = scenario(fresh, tmp_path)
    tamper(tmp_path)
    dst = new_data_dir(tmp_path, d)
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1, "restored from an edited file:\n" + r.stderr
    assert TAMPERS[tamper] in r.stderr, r.stderr
    assert "nothing was restored" in r.stderr
    assert tree(dst) == before
    for i in range(4):
        assert consumer_id(i) not in r.stderr


# The signed messages, as engine/backupsig.c lays them out.
def u64(v):
    return struct.pack("<Q", v)


def manifest_message(f):
    versions = [int(v) for v in f["key_versions"].split(",")]
    h = hashlib.blake2b(digest_size=32)
    h.update(b"vaultd-backup-m1")
    for v in (int(f["created_ms"]), int(f["store_format"]),
              int(f["deletion_seq"]), len(versions), *versions):
        h.update(u64(v))
    h.update(bytes.fromhex(f["vault_id"]))
    h.update(bytes.fromhex(f["incarnation"]))
    h.update(u64(int(f["data_bytes"])))
    h.update(bytes.fromhex(f["data_blake2b"]))
    return b"vaultd-backup-m1" + h.digest()


def export_message(vault_id, after, recs, expired, inc=bytes(16)):
    h = hashlib.blake2b(digest_size=32)
    h.update(b"vaultd-dellog-e1" + vault_id + inc + u64(after))
    for seq, ref, at in recs:
        h.update(u64(int(seq)) + bytes.fromhex(ref) + u64(int(at)))
    h.update(u64(len(recs)) + u64(expired))
    return b"vaultd-dellog-e1" + h.digest()


def test_the_signed_messages_are_what_the_restore_checks(fresh, tmp_path):
    """The test's model of the signed messages matches the daemon's: the
    vault's own signatures verify under vault_id (else the forgery test
    below would prove nothing)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import \
        Ed25519PublicKey
    scenario(fresh, tmp_path)
    fields, _ = manifest(tmp_path / "b")
    pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(fields["vault_id"]))
    pk.verify(bytes.fromhex(fields["signature"]), manifest_message(fields))
    head, recs = export_parts(tmp_path / "e")
    h = dict(l.split(" ", 1) for l in head)
    pk.verify(bytes.fromhex(h["signature"]),
              export_message(bytes.fromhex(h["vault_id"]),
                             int(h["after_seq"]), recs,
                             int(h["expired_through"]),
                             bytes.fromhex(h["incarnation"])))


def test_a_manifest_re_signed_under_another_key_is_refused(fresh, tmp_path):
    """An attacker signs a raised deletion_seq and an empty export with a
    key of their own and names it vault_id: the copy's receipt key is not
    it, so the restore refuses before the store appears."""
    d = scenario(fresh, tmp_path)
    key = Ed25519PrivateKey.generate()
    pk = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    fields, data = manifest(tmp_path / "b")
    fields["vault_id"] = pk.hex()
    fields["deletion_seq"] = "99"
    fields["signature"] = key.sign(manifest_message(fields)).hex()
    write_manifest(tmp_path / "b", fields, data)
    sig = key.sign(export_message(pk, 98, [], 0)).hex()
    (tmp_path / "e").write_text(
        f"vaultd-deletions 1\nvault_id {pk.hex()}\nincarnation {'0' * 32}\nafter_seq 98\n"
        f"expired_through 0\ncount 0\nsignature {sig}\n")
    dst = new_data_dir(tmp_path, d)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1, "restored a forged manifest:\n" + r.stderr
    assert "of another vault than its manifest names" in r.stderr, r.stderr
    assert not (dst / "db").exists()
    assert not list(dst.glob("db.restore-*"))


# ------------------------------------------------------------ authorization
def test_only_the_backup_role_may_name_admin_methods(fresh):
    """conf/auth.c's invariants bound the built-in role names; a role of
    another name listing Backup beside consumer methods must be refused
    too, at start, in --check-config and on SIGHUP."""
    d = fresh.start()
    policy = d.data_dir / "policy.conf"
    good = policy.read_text()
    bad = good.replace(
        "roles = {",
        'roles = {\n  ops = ["/vault.v1.Admin/Backup", '
        '"/vault.v1.Consumers/GetAttributes"];', 1)
    assert bad != good
    policy.write_text(bad)
    r = vaultd("--check-config", d.data_dir / "vaultd.conf")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "role 'ops' must never call /vault.v1.Admin/Backup" in r.stderr
    seen = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "the policy was not reloaded" in d.log()[seen:],
             "the reload refused")
    assert "role 'ops' must never call" in d.log()[seen:]
    assert d.stop() == 0


# ---------------------------------------------------------- interruptions
def test_a_restore_wipes_what_an_interrupted_one_left(fresh, tmp_path):
    """A restore killed before its rename leaves db.restore-XXXXXX: the
    backup's copy, perhaps before the deletions were applied again. The
    next restore into the same place removes it."""
    d = scenario(fresh, tmp_path)
    dst = new_data_dir(tmp_path, d)
    stale = dst / "db.restore-Ab12Cd"
    stale.mkdir(mode=0o700)
    (stale / "data.mdb").write_bytes(b"left by a killed restore")
    keep = dst / "db.restore-notmine"          # not a name restore makes
    keep.mkdir()
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    assert "left by an interrupted restore" in r.stderr
    assert not stale.exists()
    assert keep.exists()
    assert (dst / "db" / "data.mdb").exists()


def test_an_export_with_a_gap_in_its_sequence_is_refused(fresh, tmp_path):
    """Defence in depth behind the signature: an export whose seqs skip
    one is refused even when signed (here by a forger's key, which the
    copy's receipt key would refuse later anyway)."""
    d = scenario(fresh, tmp_path)
    key = Ed25519PrivateKey.generate()
    pk = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    fields, data = manifest(tmp_path / "b")
    fields["vault_id"] = pk.hex()
    fields["signature"] = key.sign(manifest_message(fields)).hex()
    write_manifest(tmp_path / "b", fields, data)
    _, recs = export_parts(tmp_path / "e")
    recs = [recs[0], recs[2]]                   # seq 1, then 3
    sig = key.sign(export_message(pk, 0, recs, 0)).hex()
    (tmp_path / "e").write_text(
        f"vaultd-deletions 1\nvault_id {pk.hex()}\nincarnation {'0' * 32}\nafter_seq 0\n"
        f"expired_through 0\ncount 2\nsignature {sig}\n" +
        "".join(" ".join(r) + "\n" for r in recs))
    dst = new_data_dir(tmp_path, d)
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b",
               "--deletions", tmp_path / "e")
    assert r.returncode == 1, r.stderr
    assert "skips from deletion 1 to 3" in r.stderr, r.stderr
    assert tree(dst) == before


def test_an_export_of_a_restored_copy_does_not_fit_the_original(fresh,
                                                                 tmp_path):
    """A restored store (a clone in staging, or the vault after a disaster)
    keeps vault_id and goes on from the backup's deletion numbers, so its
    exports are validly signed yet number other deletions. Spliced with a
    backup of the original they would skip the original's deletions: the
    restore gives the copy a new incarnation and refuses the mix."""
    d = fresh.start()
    populate(d, 4)
    assert d.ctl("backup", "--out", str(tmp_path / "b0")).returncode == 0
    # The original deletes c1 after the backup (seq 1).
    assert d.delete(consumer_id(1)).found
    assert d.stop() == 0

    # A clone restored from b0 (without the deletion), which deletes c2:
    # its seq 1 is c2, not c1.
    clone_dir = new_data_dir(tmp_path, d, name="clone")
    r = vaultd("--dev", "--data-dir", clone_dir, "--restore",
               tmp_path / "b0", "--no-deletions")
    assert r.returncode == 0, r.stderr
    from conftest import Daemon
    clone = Daemon(clone_dir)
    clone.start()
    try:
        assert clone.delete(consumer_id(2)).found
        out = clone.ctl("deletions", "export", "--out",
                        str(tmp_path / "clone-export"))
        assert out.returncode == 0, out.stderr
    finally:
        assert clone.stop() == 0
    text = (tmp_path / "clone-export").read_text()
    assert "incarnation " + "0" * 32 not in text

    # The original's backup b0 with the clone's export: refused.
    dst = new_data_dir(tmp_path, d, name="dst")
    before = tree(dst)
    r = vaultd("--dev", "--data-dir", dst, "--restore", tmp_path / "b0",
               "--deletions", tmp_path / "clone-export")
    assert r.returncode == 1, "spliced a clone's export:\n" + r.stderr
    assert "another incarnation" in r.stderr, r.stderr
    assert tree(dst) == before
