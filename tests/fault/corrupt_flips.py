"""Random byte flips in data.mdb: does the vault answer wrongly without saying so?

With a fixed seed: builds a store of CONSUMERS consumers, stops it, and for
each of FLIPS copies changes one random byte of data.mdb (XOR with a random
non-zero byte), starts vaultd on the copy, reads every consumer through
GetAttributes (all attributes, purpose "service") and ExportConsumer, stops
it, and runs `vaultd --check` on the copy. Each copy is classified:

  refused  vaultd exited before serving (a start-time check refused the store)
  crashed  vaultd died while serving (signal, LMDB assertion, or under
           ASan a wild read inside liblmdb itself)
  correct  every consumer answered exactly what was put
  error    some consumer got an error (DATA_LOSS, FAILED_PRECONDITION, ...)
           and none a wrong answer
  silent   some consumer got a wrong answer with no error: attributes that
           differ from what was put, or a live consumer NOT_FOUND while
           `vaultd --check` calls the store clean

A live consumer answering NOT_FOUND (its consumers record destroyed, as by
a flipped key byte) counts as detected ("error") only when `vaultd --check`
reports the store damaged: online, nothing can tell that record from one
never written.

    VAULTD=build/vaultd /usr/bin/python3 tests/fault/corrupt_flips.py \
        [--flips 120] [--consumers 300] [--seed 12] [--keep DIR]

The seed fixes the data put and where the flips land, not the keys: refs
(and so the B-tree layout) and nonces are random, so two runs differ.

Prints one line per copy and the counts at the end; exits 1 when any copy
is "silent".
"""
import argparse
import collections
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
import grpc  # noqa: E402

import conftest  # noqa: E402
from conftest import Daemon, pb  # noqa: E402

VALUES = {
    "email": lambda r, i: f"user{i}@example.test",
    "zip": lambda r, i: f"{r.randrange(10000, 99999)}",
    "age": lambda r, i: str(r.randrange(18, 90)),
    "device": lambda r, i: r.choice(["mobile", "desktop", "tablet"]),
    "income_band": lambda r, i: r.choice(["low", "middle", "high"]),
    "purchases_90d": lambda r, i: str(r.randrange(0, 50)),
    "email_opt_in": lambda r, i: r.choice(["true", "false"]),
}


def build(d, n, rng):
    """Puts n consumers with 2-7 attributes each; returns id -> attributes."""
    want = {}
    d.start()
    ch = d.channel()
    try:
        put_all(d, ch, n, rng, want)
    except BaseException:
        d.proc.kill()       # no stray daemon when the build fails
        d.proc.wait()
        raise
    ch.close()
    assert d.stop() == 0, d.log()
    return want


def put_all(d, ch, n, rng, want):
    for i in range(n):
        names = rng.sample(sorted(VALUES), rng.randrange(2, len(VALUES) + 1))
        attrs = {k: VALUES[k](rng, i) for k in names}
        cid = f"flip-{i}"
        req = pb.PutAttributesRequest(consumer_id=cid, attributes=[
            pb.Attribute(name=k, value=v) for k, v in attrs.items()])
        d.call("/vault.v1.Consumers/PutAttributes", req,
               pb.PutAttributesResponse, channel=ch)
        want[cid] = attrs


def read_all(d, want):
    """Per consumer: 'ok', 'wrong', 'notfound' or 'error'; None if vaultd died."""
    out = {}
    ch = d.channel()
    try:
        for cid, attrs in want.items():
            try:
                g = d.call("/vault.v1.Consumers/GetAttributes",
                           pb.GetAttributesRequest(consumer_id=cid,
                                                   purpose="service"),
                           pb.GetAttributesResponse, channel=ch)
                e = d.call("/vault.v1.Consumers/ExportConsumer",
                           pb.ExportConsumerRequest(consumer_id=cid),
                           pb.ExportConsumerResponse, channel=ch)
            except grpc.RpcError as err:
                if d.proc.poll() is not None:
                    return None
                out[cid] = ("notfound" if err.code() == grpc.StatusCode.NOT_FOUND
                            else "error")
                continue
            got_g = {a.name: a.value for a in g.attributes}
            got_e = {a.name: a.value for a in e.attributes}
            out[cid] = "ok" if got_g == attrs and got_e == attrs else "wrong"
    finally:
        ch.close()
    return out


def has_check():
    p = subprocess.run([conftest.VAULTD, "--help"], capture_output=True,
                       text=True, timeout=30)
    return "  --check " in p.stdout


HAS_CHECK = None
KEEP = None
SANITIZER_HITS = []


def sanitizer_report(text):
    """Which sanitizer report text holds: "own" for one in vaultd's code
    (a defect: the copy counts as a sanitizer hit), "lmdb" for a crash whose
    top frame is inside liblmdb (LMDB trusts its pages, and a flip it
    cannot see can make it read wild pointers: a crash, counted as such,
    never an answer), or None."""
    if "runtime error:" in text or "ERROR: LeakSanitizer" in text:
        return "own"
    kind = None
    for block in text.split("ERROR: AddressSanitizer")[1:]:
        top = next((l for l in block.splitlines() if l.strip().startswith("#0 ")), "")
        if "liblmdb.so" not in top:
            return "own"
        kind = "lmdb"
    return kind


def check(d):
    """vaultd --check on the (stopped) copy: True when it reports damage."""
    p = subprocess.run([conftest.VAULTD, "--check", "--dev", "--data-dir",
                        str(d.data_dir)], capture_output=True, text=True,
                       timeout=300)
    if not HAS_CHECK:
        return False, "no --check"      # a vaultd from before it existed
    lines = p.stdout.strip().splitlines()
    summary = ", ".join(f"{l.split()[0]} {l.split()[-4]}+{l.split()[-2]}"
                        for l in lines if " damaged, " in l and
                        (l.split()[-4] != "0" or l.split()[-2] != "0"))
    report = sanitizer_report(p.stderr)
    if report == "own":
        summary += " SANITIZER REPORT from --check"
    elif report == "lmdb":
        summary += " LMDB crashed in --check"
    return p.returncode != 0, f"rc {p.returncode} {summary}"


def run_one(base, work, i, rng, want):
    dst = work / f"copy{i}"
    shutil.copytree(base, dst)
    mdb = dst / "db" / "data.mdb"
    size = mdb.stat().st_size
    off = rng.randrange(size)
    x = rng.randrange(1, 256)
    with open(mdb, "r+b") as f:
        f.seek(off)
        b = f.read(1)[0]
        f.seek(off)
        f.write(bytes([b ^ x]))
    d = Daemon(dst)
    d.port = conftest.free_port()
    d.addr = f"127.0.0.1:{d.port}"
    d.spawn()
    kind, per = None, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            kind = "crashed" if d.proc.returncode < 0 or \
                "Assertion" in d.log() else "refused"
            break
        try:
            if d.health() == conftest.health_pb.HealthCheckResponse.SERVING:
                break
        except (grpc.RpcError, FileNotFoundError):
            pass
        time.sleep(0.05)
    else:
        kind = "refused"
    if kind is None:
        per = read_all(d, want)
        if per is None:
            kind = "crashed"
    if d.proc is not None:
        if d.proc.poll() is None:
            d.proc.terminate()
        try:
            d.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
        if kind is None and d.proc.returncode < 0 and \
                d.proc.returncode != -15:
            kind = "crashed"
        d.proc = None
        d.log_file.close()
    damaged, last = check(d)
    report = sanitizer_report(d.log())
    if report == "own":
        last += " SANITIZER REPORT in the log"
    elif report == "lmdb" and kind is None:
        kind = "crashed"
    if "SANITIZER" in last:
        SANITIZER_HITS.append(i)
    c = collections.Counter(per.values()) if per else collections.Counter()
    if kind is None:
        if c["wrong"] or (c["notfound"] and not damaged):
            kind = "silent"
        elif c["error"] or c["notfound"]:
            kind = "error"
        else:
            kind = "correct"
    if KEEP is not None and (kind in ("crashed", "silent") or
                             (kind == "error" and not damaged)):
        # For a closer look: the damaged copy and its log.
        shutil.copytree(dst, KEEP / dst.name, dirs_exist_ok=True)
        shutil.copy(d.log_path, KEEP / d.log_path.name)
    shutil.rmtree(dst, ignore_errors=True)
    d.log_path.unlink(missing_ok=True)
    return kind, off, c, damaged, last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flips", type=int, default=120)
    ap.add_argument("--consumers", type=int, default=300)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the copies that crashed, answered silently, "
                    "or erred where --check saw nothing, with their logs")
    a = ap.parse_args()
    global HAS_CHECK, KEEP
    HAS_CHECK = has_check()
    if a.keep:
        KEEP = pathlib.Path(a.keep)
        KEEP.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vault-flips-"))
    try:
        base = work / "base"
        want = build(Daemon(base), a.consumers, rng)
        (work / "base.log").unlink(missing_ok=True)
        totals = collections.Counter()
        for i in range(a.flips):
            kind, off, c, damaged, last = run_one(base, work, i, rng, want)
            totals[kind] += 1
            if not a.quiet:
                print(f"{i:3d} offset {off:8d}: {kind:8s} "
                      f"ok={c['ok']} error={c['error']} "
                      f"notfound={c['notfound']} wrong={c['wrong']} "
                      f"check={'damaged' if damaged else 'clean'} ({last})",
                      flush=True)
        print("totals: " + ", ".join(f"{k} {totals[k]}" for k in
              ("refused", "crashed", "correct", "error", "silent")))
        if SANITIZER_HITS:
            print(f"sanitizer reports in copies {SANITIZER_HITS}")
        return 1 if totals["silent"] or SANITIZER_HITS else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
