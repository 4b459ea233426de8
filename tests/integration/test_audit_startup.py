"""The audit chain is checked at start: a changed log stops the daemon, or
(audit_broken = "not_serving") leaves it NOT_SERVING; --verify-audit checks
the whole chain, the default the entries since the last checkpoint."""
import hashlib
import time

import lmdb
import pytest

from conftest import health_pb, pb

# These tests read or damage LMDB's own files, or use its tools.
pytestmark = pytest.mark.lmdb_only

REFUSED = "the audit log is broken"
NOT_SERVING = health_pb.HealthCheckResponse.NOT_SERVING


def key(seq):
    return seq.to_bytes(8, "big")


def open_env(d):
    return lmdb.open(str(d.data_dir / "db"), max_dbs=16, subdir=True)


def audit_value(d, seq):
    env = open_env(d)
    try:
        with env.begin(db=env.open_db(b"audit")) as txn:
            v = txn.get(key(seq))
    finally:
        env.close()
    assert v is not None
    return bytes(v)


def corrupt_raw(d, seq):
    """Flips one bit of entry seq's outcome in the raw data.mdb (every copy)."""
    value = audit_value(d, seq)
    path = d.data_dir / "db" / "data.mdb"
    raw = bytearray(path.read_bytes())
    at, n = raw.find(value), 0
    while at >= 0:
        raw[at + len(value) - 1] ^= 0x20     # "ok" -> "oK"
        n += 1
        at = raw.find(value, at + 1)
    assert n >= 1
    path.write_bytes(bytes(raw))


def meta(d, fn):
    env = open_env(d)
    try:
        with env.begin(write=True, db=env.open_db(b"meta")) as txn:
            return fn(txn)
    finally:
        env.close()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_entries(d, n, prefix="a"):
    d.put_many((f"{prefix}{i}@example.test", {"age": str(20 + i)})
               for i in range(n))


def refused(d, *extra):
    """Starts d, which must stop on its own; returns the log."""
    before = digest(d.data_dir / "db" / "data.mdb")
    d.spawn(*extra)
    assert d.wait_exit() != 0
    # A refused start changes no file.
    assert digest(d.data_dir / "db" / "data.mdb") == before
    return d.log()


def error_line(log, text):
    """The log line holding text, which must be logged at error level."""
    lines = [ln for ln in log.splitlines() if text in ln]
    assert lines, log
    assert " vaultd error " in lines[0], lines[0]
    return lines[0]


def set_config(d, line):
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + line + "\n")


def test_changed_audit_entry_refuses_start(daemon):
    write_entries(daemon, 8)
    assert daemon.stop() == 0
    daemon.start()              # an intact log starts
    assert REFUSED not in daemon.log()
    assert daemon.stop() == 0
    # The last entry is the one the checkpoint of the clean stop names.
    corrupt_raw(daemon, 8)
    log = refused(daemon)
    line = error_line(log, f"{REFUSED}: entry 8 ")
    assert 'refusing to start (audit_broken = "refuse")' in line
    # Never data: no consumer id, no attribute value.
    assert "@example.test" not in log


def test_changed_entry_after_the_checkpoint_refuses_start(daemon):
    write_entries(daemon, 4)
    assert daemon.stop() == 0
    old = meta(daemon, lambda txn: bytes(txn.get(b"audit_checkpoint")))
    daemon.start()
    write_entries(daemon, 4, prefix="b")
    assert daemon.stop() == 0
    # An older checkpoint put back (it is genuine) only widens the check.
    meta(daemon, lambda txn: txn.put(b"audit_checkpoint", old))
    corrupt_raw(daemon, 6)
    error_line(refused(daemon), f"{REFUSED}: entry 6 ")


def test_verify_audit_checks_the_whole_chain(daemon):
    write_entries(daemon, 8)
    assert daemon.stop() == 0
    corrupt_raw(daemon, 2)      # long before the checkpoint
    log = refused(daemon, "--verify-audit")
    error_line(log, f"{REFUSED}: entry 2 ")
    assert "whole chain" in log


def test_store_without_checkpoint_is_checked_whole(daemon):
    write_entries(daemon, 8)
    assert daemon.stop() == 0
    meta(daemon, lambda txn: txn.delete(b"audit_checkpoint"))
    corrupt_raw(daemon, 3)
    error_line(refused(daemon), f"{REFUSED}: entry 3 ")


def test_cut_log_refuses_start(daemon):
    write_entries(daemon, 8)
    assert daemon.stop() == 0
    # The last two entries removed and the head moved back to entry 6:
    # the chain is consistent, but shorter than the checkpoint.
    env = open_env(daemon)
    with env.begin(write=True) as txn:
        audit = env.open_db(b"audit", txn=txn)
        m = env.open_db(b"meta", txn=txn)
        six = bytes(txn.get(key(6), db=audit))
        txn.delete(key(7), db=audit)
        txn.delete(key(8), db=audit)
        txn.put(b"audit_head", key(6) + six[41:73], db=m)
    env.close()
    error_line(refused(daemon), f"{REFUSED}: entry 7 ")


def test_damaged_checkpoint_refuses_start(daemon):
    write_entries(daemon, 3)
    assert daemon.stop() == 0

    def flip(txn):
        cp = bytearray(txn.get(b"audit_checkpoint"))
        cp[-1] ^= 0x01
        txn.put(b"audit_checkpoint", bytes(cp))
    meta(daemon, flip)
    log = refused(daemon)
    error_line(log, f"{REFUSED}: the checkpoint fails its MAC")


def test_broken_log_with_not_serving_serves_not_serving(daemon):
    write_entries(daemon, 5)
    assert daemon.stop() == 0
    corrupt_raw(daemon, 5)
    set_config(daemon, 'audit_broken = "not_serving";')
    daemon.start(ready=(NOT_SERVING,))
    assert daemon.health("vault.v1.Consumers") == NOT_SERVING
    log = daemon.log()
    error_line(log, f"{REFUSED}: entry 5 ")
    assert "serving with health NOT_SERVING" in log
    # An auditor can still look at the damage.
    v = daemon.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                    pb.VerifyAuditResponse)
    assert not v.ok and v.first_bad_seq == 5
    # The checkpoint does not move past the damage, neither while running
    # (a periodic check would have run by now) nor at the stop.
    time.sleep(1.5)
    assert daemon.stop() == 0
    daemon.start(ready=(NOT_SERVING, health_pb.HealthCheckResponse.SERVING))
    assert daemon.health() == NOT_SERVING


def checkpoint_seq(d):
    env = lmdb.open(str(d.data_dir / "db"), max_dbs=16, subdir=True,
                    readonly=True)
    try:
        with env.begin(db=env.open_db(b"meta", create=False)) as txn:
            cp = txn.get(b"audit_checkpoint")
            return int.from_bytes(cp[1:9], "big") if cp else 0
    finally:
        env.close()


def test_checkpoint_moves_while_running(daemon):
    """After a crash, the start checks only what came after the last
    checkpoint the running daemon recorded (about every second)."""
    write_entries(daemon, 6)
    deadline = time.monotonic() + 30
    while checkpoint_seq(daemon) < 6:
        assert time.monotonic() < deadline, "no checkpoint while running"
        time.sleep(0.1)
    daemon.proc.kill()
    daemon.wait_exit()
    daemon.start()
    assert "audit log intact: 1 entries checked (since the checkpoint)" \
        in daemon.log()


def test_bad_audit_broken_setting_is_refused(fresh):
    fresh.start()
    assert fresh.stop() == 0
    set_config(fresh, 'audit_broken = "ignore";')
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "audit_broken" in fresh.log()
