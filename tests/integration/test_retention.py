"""Retention (issue 18, point 8): an attribute's retain_days. A value past
it is never released (GetAttributes, FetchFeatures), ExportConsumer shows
each value's expiry, and the janitor erases it (its record sealed again
under a new DEK, its suppression count lowered, an audit entry). The clock
is moved by VAULTD_DEV_CLOCK_SHIFT_S (a --dev vault only), not by sleeping.
"""
import re
import subprocess
import time

import grpc
import pytest

from conftest import BACKEND, VAULTD, pb
from test_features import fetch

DAY_S = 86400


def with_retention(d):
    """device kept 30 days after its last write, purchases_90d 90."""
    conf = d.data_dir / "vaultd.conf"
    text = conf.read_text()
    text, n = re.subn(r'(\{ name = "device"; type = "category";)',
                      r'\1 retain_days = 30;', text)
    assert n == 1
    text, n = re.subn(r'(\{ name = "purchases_90d"; type = "int";)',
                      r'\1 retain_days = 90;', text)
    assert n == 1
    conf.write_text(text + "\njanitor_interval_ms = 200;\n")


def export(d, cid):
    return {a.name: a for a in d.call(
        "/vault.v1.Consumers/ExportConsumer",
        pb.ExportConsumerRequest(consumer_id=cid),
        pb.ExportConsumerResponse).attributes}


def audit(d, method):
    with d.channel() as ch:
        return list(d.stream(ch, "/vault.v1.Audit/QueryAudit",
                             pb.QueryAuditRequest(method=method),
                             pb.AuditEntry))


def wait_log(d, text, timeout=30):
    deadline = time.monotonic() + timeout
    while text not in d.log():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.1)


def test_expired_values_are_withheld_then_erased(fresh, monkeypatch):
    fresh.start()
    assert fresh.stop() == 0
    with_retention(fresh)
    fresh.start()
    for i in range(3):
        fresh.put(f"r{i}@example.test", device="mobile", purchases_90d="3",
                  age="40")
    x = export(fresh, "r0@example.test")
    day_ms = DAY_S * 1000
    assert x["device"].expires_at_ms == x["device"].updated_at_ms + 30 * day_ms
    assert x["purchases_90d"].expires_at_ms == \
        x["purchases_90d"].updated_at_ms + 90 * day_ms
    assert x["age"].expires_at_ms == 0
    doc = __import__("json").loads(fresh.ctl("export", "r0@example.test").stdout)
    assert doc["expires_at_ms"] == {"device": x["device"].expires_at_ms,
                                    "purchases_90d":
                                    x["purchases_90d"].expires_at_ms}
    assert fresh.stop() == 0

    # 31 days on: device has expired, purchases_90d has not.
    monkeypatch.setenv("VAULTD_DEV_CLOCK_SHIFT_S", str(31 * DAY_S))
    fresh.start()
    assert "clock runs 2678400 s ahead" in fresh.log()
    got = fresh.get("r1@example.test")
    assert "device" not in got and got["purchases_90d"] == "3"
    assert fresh.get("r1@example.test", ["device"]) == {}
    batches = fetch(fresh, "training", dataset="ret-1",
                    attributes=["device", "purchases_90d"])
    rows = [list(r.tokens) for b in batches for r in b.rows]
    assert len(rows) == 3 and all(t[0] == 0 and t[1] != 0 for t in rows)
    # The janitor erases them: one audit entry per consumer, names only.
    wait_log(fresh, "retention: erased 3 expired values of 3 consumers")
    x = export(fresh, "r2@example.test")
    assert "device" not in x and x["purchases_90d"].value == "3"
    entries = audit(fresh, "vaultd retention")
    assert len(entries) == 3
    assert all(list(e.attribute_names) == ["device"] for e in entries)
    assert all(e.principal == "vaultd" and e.outcome == "ok"
               for e in entries)
    # A value written again is kept another 30 days from now.
    fresh.put("r0@example.test", device="tablet")
    assert fresh.get("r0@example.test", ["device"]) == {"device": "tablet"}
    assert fresh.stop() == 0
    # The suppression counts followed the values (--check recomputes them;
    # it reads LMDB's files).
    monkeypatch.delenv("VAULTD_DEV_CLOCK_SHIFT_S")
    if BACKEND != "lmdb":
        return
    r = subprocess.run([VAULTD, "--check", "--dev", "--data-dir",
                        str(fresh.data_dir)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_clock_shift_is_for_dev_vaults_only(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("VAULTD_DEV_CLOCK_SHIFT_S", "60")
    r = subprocess.run([VAULTD, "--config", str(tmp_path / "none.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "VAULTD_DEV_CLOCK_SHIFT_S is for tests" in r.stderr
    monkeypatch.setenv("VAULTD_DEV_CLOCK_SHIFT_S", "soon")
    r = subprocess.run([VAULTD, "--dev", "--data-dir", str(tmp_path / "d"),
                        "--hash-token"], capture_output=True, text=True,
                       timeout=30, input="x\n")
    assert r.returncode == 2 and "not a number of seconds" in r.stderr


def test_retain_days_out_of_range_is_a_config_error(fresh):
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text().replace(
        '{ name = "zip"; type = "string";',
        '{ name = "zip"; type = "string"; retain_days = 0;'))
    fresh.spawn()
    assert fresh.wait_exit() != 0
    assert "attribute 'zip': retain_days must be 1..36500" in fresh.log()


def test_inactive_consumers_are_deleted_with_receipts(fresh, monkeypatch):
    """consumer_inactive_days = 30: a consumer not written for 31 days is
    deleted as DeleteConsumer would (receipt, ledger, audit); one written
    11 days ago stays; reads do not count as activity."""
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "\nconsumer_inactive_days = 30;\n"
                    "janitor_interval_ms = 200;\n")
    fresh.start()
    for cid in ("idle@example.test", "busy@example.test"):
        fresh.put(cid, age="40", device="mobile")
    fetch(fresh, "training", dataset="inact-ds", attributes=["age"])
    assert fresh.stop() == 0
    monkeypatch.setenv("VAULTD_DEV_CLOCK_SHIFT_S", str(20 * DAY_S))
    fresh.start()
    fresh.put("busy@example.test", age="41")
    fresh.get("idle@example.test")            # a read is not activity
    assert fresh.stop() == 0
    monkeypatch.setenv("VAULTD_DEV_CLOCK_SHIFT_S", str(31 * DAY_S))
    fresh.start()
    wait_log(fresh, "retention: deleted 1 consumers inactive for 30 days")
    with pytest.raises(grpc.RpcError) as err:
        fresh.get("idle@example.test")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert fresh.get("busy@example.test", ["age"]) == {"age": "41"}
    [entry] = audit(fresh, "vaultd inactivity")
    assert entry.kind == "delete" and entry.principal == "vaultd"
    with fresh.channel() as ch:
        events = list(fresh.stream(ch, "/vault.v1.Deletion/WatchDeletions",
                                   pb.WatchDeletionsRequest(
                                       dataset_id="inact-ds"),
                                   pb.DeletionEvent))
    assert len(events) == 1
    assert "idle@example.test" not in fresh.log()
    assert fresh.stop() == 0
