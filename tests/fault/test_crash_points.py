"""Every named crash point, driven by the scenario of its area.

The points are found by scanning daemon/ for VAULT_CRASH_POINT("area.step"),
so a point added anywhere is tested (or, of an area no scenario knows, fails
by name). For each: a store with a ledger of acknowledged operations, then
vaultd with VAULT_CRASH_AT=point under the area's workload until the point
fires (the test fails if it never does), then a restart without it and the
invariants: nothing acknowledged lost, nothing deleted readable, no usable
key file of a destroyed version, the audit chain whole, an interrupted
rotation completed.
"""
import os
import subprocess
import time
import zlib

import grpc
import pytest

from conftest import ROOT
from faultlib import (FaultDaemon, Ledger, Workload, binary_has_crash_points,
                      check_invariants, crash_points, preload)

if not os.environ.get("VAULTD_CRASH"):
    pytest.skip("VAULTD_CRASH is not set (scripts/build --crash)",
                allow_module_level=True)
if not binary_has_crash_points():
    pytest.skip(f"{os.environ['VAULTD_CRASH']} has no crash points",
                allow_module_level=True)

PRELOAD = int(os.environ.get("VAULT_FAULT_PRELOAD", "600"))
FIRE_TIMEOUT = float(os.environ.get("VAULT_FAULT_FIRE_TIMEOUT", "30"))

# area -> (how the daemon first starts, the workload, which hit to die at)
#   "fresh": armed from the very first start of an empty data dir (the
#            points of first-run set-up), then a small preload and the workload
#   "store": armed on a store preloaded with PRELOAD consumers
#   "killed": the same, then killed under the workload (meta pages lost)
# The hit count lets the first hits (the start's own writes) pass, so most
# points fire under load, with acknowledged operations in flight.
SCENARIOS = {
    "writer":  ("store", {}, 25),
    "put":     ("store", {}, 5),
    "journal": ("store", {}, 3),
    "audit":   ("store", {}, 2),
    "delete":  ("store", {}, 3),
    "consent": ("store", {}, 3),
    "rotate":  ("store", {"rotate": True}, 1),
    "destroy": ("store", {"rotate": True}, 1),
    "keyfile": ("fresh", {"rotate": True}, 1),
    "dev":     ("fresh", {}, 1),
    # The store journal: appends, checkpoints, erasing old segments.
    "wal":     ("store", {}, 3),
    # Its recovery: armed on a store killed under load, with LMDB's meta
    # pages lost as a power cut may lose them.
    "recover": ("killed", {}, 1),
    # Offline: vaultd --compact on a stopped, preloaded store (below).
    "compact": ("offline", {}, 1),
}

POINTS = crash_points(ROOT)


def test_points_found():
    assert POINTS, "no VAULT_CRASH_POINT in daemon/"
    unknown = sorted({p.split(".")[0] for p in POINTS} - set(SCENARIOS))
    assert not unknown, f"crash point area(s) with no scenario: {unknown}"


def fired(d, point, before):
    return d.log().count(f"vaultd: crash point {point}\n") > before


# Points of the dev TLS material, reached only by a first `--dev --tls` start.
TLS_POINTS = {"dev.before_tls_rename"}


@pytest.mark.parametrize("point", sorted(p for p in POINTS if p in TLS_POINTS))
def test_crash_point_of_dev_tls(tmp_path, point):
    """Killed while the first --dev --tls start writes its certificates: the
    next --tls start makes them whole and serves mTLS."""
    d = FaultDaemon(tmp_path / "vault", tls=True)
    try:
        assert d.start_or_die("--tls", env={"VAULT_CRASH_AT": point}) is None
        assert d.reap() == -9 and fired(d, point, 0), d.log()[-3000:]
        assert d.start_or_die("--tls") is not None, d.log()[-3000:]
        assert d.stop() == 0, d.log()
    finally:
        if d.proc is not None:
            d.kill()


@pytest.mark.parametrize("point", sorted(p for p in POINTS
                                         if p.startswith("compact.")))
def test_crash_point_of_compaction(tmp_path, point):
    """vaultd --compact killed at each step of its swap: the next start
    serves the whole store (old or compacted), and the next compaction
    clears what the killed one left."""
    d = FaultDaemon(tmp_path / "vault")
    ledger = Ledger()
    try:
        assert d.start_or_die() is not None, d.log()
        preload(d, ledger, PRELOAD // 4)
        assert d.stop() == 0, d.log()
        args = [os.environ["VAULTD"], "--dev", "--data-dir", str(d.data_dir),
                "--compact"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "VAULT_CRASH_AT": point})
        assert r.returncode == -9, r.stderr
        assert f"vaultd: crash point {point}" in r.stderr
        assert d.start_or_die() is not None, d.log()[-3000:]
        check_invariants(d, ledger)
        assert d.stop() == 0, d.log()
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        left = sorted(p.name for p in (d.data_dir / "db").iterdir()
                      if p.name.startswith("data.mdb."))
        assert left == []
        assert d.start_or_die() is not None, d.log()[-3000:]
        check_invariants(d, ledger)
        assert d.stop() == 0, d.log()
    finally:
        if d.proc is not None:
            d.kill()


@pytest.mark.parametrize("point", [p for p in POINTS if p not in TLS_POINTS
                                   and not p.startswith("compact.")])
def test_crash_point(tmp_path, point):
    area = point.split(".")[0]
    assert area in SCENARIOS, f"crash point {point}: no scenario for area {area!r}"
    start, opts, nth = SCENARIOS[area]
    d = FaultDaemon(tmp_path / "vault")
    ledger = Ledger()
    env = {"VAULT_CRASH_AT": f"{point}:{nth}" if nth > 1 else point}
    cons = []
    try:
        if start in ("store", "killed"):
            assert d.start_or_die() is not None, d.log()
            cons = preload(d, ledger, PRELOAD)
            if start == "killed":
                with Workload(d, ledger, seed=7, consent_cids=cons):
                    time.sleep(1.5)
                    assert d.kill() == -9
                assert d.lose_meta_pages()
            else:
                assert d.stop() == 0, d.log()
        before = d.log().count(f"vaultd: crash point {point}\n")
        # Armed: the point may fire during the start itself.
        t0 = time.monotonic()
        if d.start_or_die(env=env) is not None:
            if start == "fresh":
                try:
                    cons = preload(d, ledger, PRELOAD // 4)
                except grpc.RpcError:
                    assert not d.alive(), d.log()[-3000:]
        if d.alive():
            with Workload(d, ledger, seed=zlib.crc32(point.encode()) & 0xffff,
                          consent_cids=cons, **opts):
                while d.alive() and time.monotonic() - t0 < FIRE_TIMEOUT:
                    time.sleep(0.02)
        if d.alive():
            d.kill()
            pytest.fail(f"crash point {point} never fired in {FIRE_TIMEOUT:.0f} s "
                        f"(VAULT_CRASH_AT={env['VAULT_CRASH_AT']})")
        rc = d.reap()
        assert fired(d, point, before), \
            f"vaultd died (status {rc}) but not at {point}:\n{d.log()[-3000:]}"
        assert rc == -9, f"status {rc}"
        # Restarted without the point: it must serve, and hold what it said.
        assert d.start_or_die() is not None, \
            f"no restart after {point}:\n{d.log()[-3000:]}"
        check_invariants(d, ledger)
        # And it keeps working.
        d.put("after-crash", zip="1")
        assert d.get("after-crash", names=["zip"]) == {"zip": "1"}
        assert d.stop() == 0, d.log()
    finally:
        if d.proc is not None:
            d.kill()
