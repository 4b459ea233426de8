"""Master keys in a PKCS#11 token (key_provider = "pkcs11"), on SoftHSM2."""
import os
import re
import shutil
import subprocess

import grpc
import pytest

from conftest import BACKEND, VAULTD, Daemon, shared_pg
from test_deletion import key_status
from test_keyfiles import (check_destroyed, crash, needs_crash_points,
                           prepare_destroy)
from test_rotation import destroy, rotate, versions

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"


class Token:
    """A SoftHSM2 token of its own, in a temporary directory."""

    def __init__(self, base, monkeypatch):
        self.dir = base / "softhsm"
        (self.dir / "tokens").mkdir(parents=True)
        conf = self.dir / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\n"
                        "objectstore.backend = file\nlog.level = ERROR\n")
        # vaultd, softhsm2-util and p11tool all find the token through it.
        monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label",
                        "vaulttest", "--pin", PIN, "--so-pin", "5678"],
                       check=True, stdout=subprocess.DEVNULL)
        self.pin_file = base / "token-pin"
        self.set_pin(PIN)

    def set_pin(self, pin):
        self.pin_file.write_text(pin + "\n")
        self.pin_file.chmod(0o600)

    def labels(self):
        """Labels of the token's objects, as p11tool lists them after login."""
        out = subprocess.run(
            ["p11tool", "--provider", MODULE, "--login", "--list-all",
             "pkcs11:token=vaulttest"],
            env={**os.environ, "GNUTLS_PIN": PIN}, check=True,
            capture_output=True, text=True).stdout
        return sorted(line.split(":", 1)[1].strip() for line in
                      out.splitlines() if line.strip().startswith("Label:"))


def pkcs11_settings(token, module=MODULE, label="vaulttest"):
    return (f'key_provider = "pkcs11";\npkcs11_module = "{module}";\n'
            f'pkcs11_token_label = "{label}";\n'
            f'pkcs11_pin_file = "{token.pin_file}";\n')


@pytest.fixture
def vault(tmp_path, monkeypatch):
    """A dev-mode vault whose config keeps its master keys on a token."""
    token = Token(tmp_path, monkeypatch)
    # A dev config, from a throwaway dev vault: its store and key stay there.
    seed = Daemon(tmp_path / "seed")
    seed.start()
    assert seed.stop() == 0
    d = Daemon(tmp_path / "vault")
    d.data_dir.mkdir()
    conf = (seed.data_dir / "vaultd.conf").read_text()
    if BACKEND != "lmdb":
        # The seed's database holds the seed's store: a new one for this vault.
        conf = re.sub(r'^(store_backend|postgresql_conninfo|replica_name) = .*\n',
                      '', conf, flags=re.M) + shared_pg().vault_conf() + "\n"
    # No upkeep pass between a deletion and a copy: nothing reuses pages.
    (d.data_dir / "vaultd.conf").write_text(
        conf + "\njanitor_interval_ms = 3600000;\n" + pkcs11_settings(token))
    d.token_dev = token
    yield d
    if d.proc is not None:
        d.proc.kill()
        d.proc.wait()


def key_files(d):
    return sorted(p.name for p in (d.data_dir / "keys").iterdir()
                  if p.name.startswith("master-"))


@pytest.mark.lmdb_only  # copies LMDB's file as the backup
def test_keys_live_and_die_on_the_token(vault, tmp_path):
    token = vault.token_dev
    vault.start()
    assert token.labels() == ["vaultd-master-1"]
    for i in range(5):
        vault.put(f"keep{i}", age="40", email=f"keep{i}@example.test")
    vault.put("victim", age="33", email="victim@example.test")
    assert vault.stop() == 0
    # A backup of the store, taken while the victim is in it.
    backup = tmp_path / "backup-db"
    shutil.copytree(vault.data_dir / "db", backup)

    vault.start()
    assert vault.get("victim") == {"age": "33", "email": "victim@example.test"}
    vault.delete("victim", request_id="dsr-victim")
    progress = rotate(vault)
    assert progress[-1].done and progress[-1].new_version == 2
    assert token.labels() == ["vaultd-master-1", "vaultd-master-2"]
    destroyed = destroy(vault, 1)
    assert destroyed.version == 1
    assert token.labels() == ["vaultd-master-2"]
    vs = versions(vault)
    assert vs[1].state == "destroyed" and vs[2].state == "active"
    for i in range(5):
        assert vault.get(f"keep{i}")["email"] == f"keep{i}@example.test"
    assert vault.stop() == 0

    # A restart reads everything, from the token alone.
    vault.start()
    for i in range(5):
        assert vault.get(f"keep{i}")["age"] == "40"
    with pytest.raises(grpc.RpcError) as e:
        vault.get("victim")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert vault.stop() == 0
    assert key_files(vault) == []

    # The backup taken before the deletion no longer opens: version 1 is
    # gone from the token, for every copy of the store at once.
    shutil.rmtree(vault.data_dir / "db")
    shutil.copytree(backup, vault.data_dir / "db")
    vault.spawn()
    assert vault.wait_exit() != 0
    assert "master key version 1 is missing from the PKCS#11 token" in vault.log()


def snapshot(d):
    """Every file of d's data directory but LMDB's lock file (its reader
    table, rewritten by any open, holds no data)."""
    return {p: p.read_bytes() for p in d.data_dir.rglob("*")
            if p.is_file() and p.name != "lock.mdb"}


@pytest.mark.parametrize("change, cause", [
    ("pin", "C_Login: CKR_PIN_INCORRECT"),
    ("pin-mode", "must be 0600 or stricter"),
    ("label", 'no PKCS#11 token labelled "elsewhere"'),
    ("module", "cannot load PKCS#11 module /nonexistent/libsofthsm2.so"),
])
def test_unusable_token_refuses_the_start(vault, change, cause):
    token = vault.token_dev
    vault.start()
    vault.put("p1", age="20")
    assert vault.stop() == 0
    conf = vault.data_dir / "vaultd.conf"
    text = conf.read_text()
    if change == "pin":
        token.set_pin("wrong-pin-4711")
    elif change == "pin-mode":
        token.pin_file.chmod(0o644)
    elif change == "label":
        conf.write_text(text.replace('"vaulttest"', '"elsewhere"'))
    else:
        conf.write_text(text.replace(MODULE, "/nonexistent/libsofthsm2.so"))
    before = snapshot(vault)
    log_before = len(vault.log())
    vault.spawn()
    assert vault.wait_exit() != 0
    log = vault.log()[log_before:]
    assert cause in log, log
    assert "wrong-pin-4711" not in log
    assert snapshot(vault) == before
    assert token.labels() == ["vaultd-master-1"]
    # Put right, it starts and reads what it wrote.
    token.set_pin(PIN)
    conf.write_text(text)
    vault.start()
    assert vault.get("p1") == {"age": "20"}
    assert vault.stop() == 0


# ------------------------------------------------------------ crash points

@needs_crash_points
@pytest.mark.parametrize("point", ["destroy.before_wipe", "destroy.after_unlink",
                                   "destroy.after_commit"])
def test_crash_during_destroy_leaves_no_token_object(vault, monkeypatch, point):
    backup = prepare_destroy(vault)
    assert vault.token_dev.labels() == ["vaultd-master-1", "vaultd-master-2"]
    crash(vault, monkeypatch, point, lambda: destroy(vault, 1))
    # The next start destroys the object if the crash left it, the janitor
    # finishes; the backup from before needs version 1 and is refused.
    check_destroyed(vault, backup)
    assert vault.token_dev.labels() == ["vaultd-master-2"]


@needs_crash_points
@pytest.mark.parametrize("point", ["rotate.before_activate", "rotate.after_activate"])
def test_crash_during_rotation_start(vault, monkeypatch, point):
    vault.start()
    for i in range(3):
        vault.put(f"r{i}", age=str(20 + i))
    assert vault.stop() == 0
    crash(vault, monkeypatch, point, lambda: rotate(vault))
    assert "vaultd-master-2" in vault.token_dev.labels()
    vault.start()
    assert rotate(vault)[-1].done
    st = key_status(vault)
    assert st.active_version >= 2 and not st.rotation_in_progress
    assert versions(vault)[1].dek_count == 0
    assert vault.get("r1") == {"age": "21"}
    assert vault.stop() == 0
    assert key_files(vault) == []


# ----------------------------------------------------------------- restore

def restore(src, dst, backup, deletions):
    """vaultd --dev --restore into dst, a new data directory with src's config."""
    (dst / "keys").mkdir(parents=True)
    os.chmod(dst, 0o700)
    os.chmod(dst / "keys", 0o700)
    shutil.copy2(src.data_dir / "vaultd.conf", dst / "vaultd.conf")
    return subprocess.run([VAULTD, "--dev", "--data-dir", str(dst), "--restore",
                           str(backup), "--deletions", str(deletions)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.lmdb_only  # a Backup and --restore (LMDB only)
def test_restore_from_the_token_and_a_shredded_backup(vault, tmp_path):
    vault.start()
    for i in range(4):
        vault.put(f"b{i}", age=str(50 + i))
    assert vault.ctl("backup", "--out", str(tmp_path / "b1")).returncode == 0
    assert vault.delete("b1").found
    out = vault.ctl("deletions", "export", "--out", str(tmp_path / "del"))
    assert out.returncode == 0, out.stderr
    assert vault.stop() == 0

    r = restore(vault, tmp_path / "restored", tmp_path / "b1", tmp_path / "del")
    assert r.returncode == 0, r.stderr
    assert "re-applied 1 deletion(s)" in r.stderr
    restored = Daemon(tmp_path / "restored")
    restored.start()
    assert restored.get("b2") == {"age": "52"}
    with pytest.raises(grpc.RpcError) as e:
        restored.get("b1")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert restored.stop() == 0
    assert key_files(restored) == []

    # Version 1 destroyed on the token: the backup can never be restored.
    vault.start()
    assert rotate(vault)[-1].done
    destroy(vault, 1)
    out = vault.ctl("deletions", "export", "--out", str(tmp_path / "del2"))
    assert out.returncode == 0, out.stderr
    assert vault.stop() == 0
    r = restore(vault, tmp_path / "again", tmp_path / "b1", tmp_path / "del2")
    assert r.returncode != 0
    assert "this backup is crypto-shredded" in r.stderr, r.stderr
    assert not (tmp_path / "again" / "db" / "data.mdb").exists()


@pytest.mark.lmdb_only  # the two vaults' configs share one store path
def test_another_vaults_token_is_refused_by_the_key_check_value(vault, tmp_path):
    token = vault.token_dev
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label",
                    "other", "--pin", PIN, "--so-pin", "5678"],
                   check=True, stdout=subprocess.DEVNULL)
    conf = vault.data_dir / "vaultd.conf"
    text = conf.read_text()
    # Another vault makes its version 1 on the token "other".
    other = Daemon(tmp_path / "other")
    other.data_dir.mkdir()
    (other.data_dir / "vaultd.conf").write_text(
        text.replace('"vaulttest"', '"other"'))
    other.start()
    assert other.stop() == 0
    vault.start()
    vault.put("p1", age="20")
    assert vault.stop() == 0
    # This vault's store, pointed at the other vault's token.
    conf.write_text(text.replace('"vaulttest"', '"other"'))
    before = snapshot(vault)
    vault.spawn()
    assert vault.wait_exit() != 0
    assert ("master key token object for version 1 does not match the "
            "store's key check value: wrong token") in vault.log()
    assert snapshot(vault) == before
    conf.write_text(text)
    vault.start()
    assert vault.get("p1") == {"age": "20"}
    assert vault.stop() == 0
    assert token.labels() == ["vaultd-master-1"]
