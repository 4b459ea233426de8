"""kill -9 at random moments, under concurrent load, many times over.

Each round: concurrent puts, batched deletions (DeleteConsumers with request
ids), consent changes, audited reads, now and then a rotation (and the
destruction of the versions it retired); SIGKILL after a random delay
(fixed seed); restart; deletions left in flight retried with the same
request ids (a fifth of the restarts are themselves killed first, at a
random moment of the start; every other kill also loses LMDB's meta pages,
as a power cut can, for the store journal to recover); then the ledger: every acknowledged put readable with its
value unless later deleted, every acknowledged deletion NOT_FOUND and its
request id answered with the same receipt, consents as acknowledged, no
usable key file of a destroyed version, the audit chain whole.

VAULT_KILLS (default 30) sets the number of kills, VAULT_KILL_SEED the seed;
scripts/torture runs it with many more.
"""
import os
import random
import time

from faultlib import FaultDaemon, Ledger, Workload, check_invariants, preload

KILLS = int(os.environ.get("VAULT_KILLS", "30"))
SEED = int(os.environ.get("VAULT_KILL_SEED", "12"))
MAX_DELAY = float(os.environ.get("VAULT_KILL_MAX_DELAY", "1.0"))
SAMPLE = 150            # consumers of each kind checked per round (all at the end)
ROTATE_EVERY = 4        # rounds
START_KILLS = 0.2       # the share of restarts also killed while starting


def test_kill_loop(tmp_path, capsys):
    rng = random.Random(SEED)
    d = FaultDaemon(tmp_path / "vault")
    ledger = Ledger()
    restarts = []
    start_kills = 0
    t_start = time.monotonic()
    try:
        assert d.start_or_die() is not None, d.log()
        cons = preload(d, ledger, 200)
        for k in range(KILLS):
            w = Workload(d, ledger, seed=SEED * 100000 + k, consent_cids=cons,
                         rotate=k % ROTATE_EVERY == ROTATE_EVERY - 1,
                         rotate_pause=rng.uniform(0.0, 0.3), rotations=1)
            with w:
                time.sleep(rng.uniform(0.05, MAX_DELAY))
                rc = d.kill()
            assert rc == -9, f"round {k}: vaultd exited {rc} before the kill:\n" \
                + d.log()[-3000:]
            assert not w.errors, f"round {k}: {w.errors[:5]}"
            # Every other kill, the data file's meta pages lost too (a power
            # cut with LMDB's unsynced writes): the journal must recover.
            if k % 2 == 1:
                d.lose_meta_pages()
            # Now and then a kill during the start itself (recovery, the
            # resumed rotation, the journal moved in).
            if rng.random() < START_KILLS:
                d.spawn()
                time.sleep(rng.uniform(0.0, 0.1))
                d.kill()
                start_kills += 1
            took = d.start_or_die()
            assert took is not None, f"round {k}: no restart:\n{d.log()[-3000:]}"
            restarts.append(took)
            check_invariants(d, ledger, sample=SAMPLE, rng=rng)
        losses = check_invariants(d, ledger)       # everything, once
        assert d.stop() == 0, d.log()
    finally:
        if d.proc is not None:
            d.kill()
    a = ledger.acks
    summary = (f"kill loop: {KILLS} kills under load and {start_kills} while "
               f"starting (seed {SEED}) in "
               f"{time.monotonic() - t_start:.0f} s; acknowledged: "
               f"{a['put']} puts, {a['delete']} deletions, {a['consent']} "
               f"consents, {a['rotation']} rotations, {a['destroy']} "
               f"destructions, {a['read']} reads; losses: {losses}; "
               f"restart to SERVING: max {max(restarts) * 1000:.0f} ms, "
               f"mean {sum(restarts) / len(restarts) * 1000:.0f} ms")
    with capsys.disabled():
        print("\n" + summary)
