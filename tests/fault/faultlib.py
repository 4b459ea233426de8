"""What the fault tests share: a daemon that can be killed and restarted, a
client-side ledger of acknowledged operations, a mixed workload that keeps
it, and the invariants checked after every restart."""
import os
import random
import re
import signal
import subprocess
import threading
import time

import grpc

from vault_integration_conftest import Daemon, VAULTD, health_pb, pb

SERVING = health_pb.HealthCheckResponse.SERVING
CRASH_RE = re.compile(rb'VAULT_CRASH_POINT\("([a-z0-9_]+\.[a-z0-9_]+)"\)')


def binary_has_crash_points(path=VAULTD):
    try:
        with open(path, "rb") as f:
            return b"vaultd: crash point" in f.read()
    except OSError:
        return False


def crash_points(root):
    """Every VAULT_CRASH_POINT("area.step") in the daemon's sources."""
    found = set()
    for dirpath, _, files in os.walk(root / "daemon"):
        for name in files:
            if name.endswith(".c"):
                with open(os.path.join(dirpath, name), "rb") as f:
                    found.update(m.decode() for m in CRASH_RE.findall(f.read()))
    return sorted(found)


class FaultDaemon(Daemon):
    """A Daemon that can be started with a crash point armed and killed."""

    def spawn(self, *extra, listen=None, env=None):
        self.log_file = open(self.log_path, "ab")
        args = [VAULTD, "--dev", "--data-dir", str(self.data_dir),
                "--listen", listen or self.addr, *extra]
        full = dict(os.environ)
        full.pop("VAULT_CRASH_AT", None)
        full.update(env or {})
        self.proc = subprocess.Popen(args, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=full)
        return self.proc

    def start_or_die(self, *extra, env=None, timeout=60):
        """Spawns vaultd; the seconds it took to SERVING, or None if it died."""
        t0 = time.monotonic()
        self.spawn(*extra, env=env)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                return None
            try:
                if self.health() == SERVING:
                    return time.monotonic() - t0
            except (grpc.RpcError, FileNotFoundError):   # TLS files not yet made
                pass
            time.sleep(0.02)
        raise AssertionError("vaultd did not become healthy:\n" + self.log())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL; returns the exit status (negative: the signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        self.log_file.close()
        self.assert_sanitizer_clean()
        return rc

    def reap(self):
        """The exit status of a daemon that died on its own."""
        return self.kill()

    def lose_meta_pages(self):
        """After a kill: LMDB's two meta pages as a power cut may leave them
        (never written) where the store journal has a checkpoint to restore
        them from; the journal's records then replay every acknowledged
        write. True when it did."""
        db = self.data_dir / "db"
        if not (db / "wal.ckpt").exists():
            return False
        with open(db / "data.mdb", "r+b") as f:
            f.write(b"\0" * 8192)
        return True


# ------------------------------------------------------------------ calls

def key_status(d):
    return d.call("/vault.v1.Keys/GetKeyStatus", pb.GetKeyStatusRequest(),
                  pb.GetKeyStatusResponse)


def verify_audit(d):
    return d.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                  pb.VerifyAuditResponse, timeout=120)


def delete_many(d, pairs, timeout=60):
    req = pb.DeleteConsumersRequest(requests=[
        pb.DeleteConsumerRequest(consumer_id=c, request_id=r) for c, r in pairs])
    return d.call("/vault.v1.Deletion/DeleteConsumers", req,
                  pb.DeleteConsumersResponse, timeout=timeout).receipts


def set_consent(d, cid, granted, purpose="research"):
    return d.call("/vault.v1.Consumers/SetConsent",
                  pb.SetConsentRequest(consumer_id=cid, purpose=purpose,
                                       granted=granted, source="api"),
                  pb.SetConsentResponse, timeout=30)


def consents(d, cid):
    r = d.call("/vault.v1.Consumers/ExportConsumer",
               pb.ExportConsumerRequest(consumer_id=cid),
               pb.ExportConsumerResponse, timeout=30)
    return {c.purpose: c.granted for c in r.consents}


def rotate(d, timeout=120):
    last = None
    with d.channel() as ch:
        for p in d.stream(ch, "/vault.v1.Keys/RotateMasterKey",
                          pb.RotateMasterKeyRequest(), pb.RotationProgress,
                          timeout=timeout):
            last = p
    return last


def destroy_retired(d):
    """Destroys every version no DEK needs any more; returns the versions."""
    done = []
    st = key_status(d)
    if st.rotation_in_progress:
        return done
    for v in st.versions:
        if v.state == "decrypt-only" and v.dek_count == 0:
            d.call("/vault.v1.Keys/DestroyMasterKey",
                   pb.DestroyMasterKeyRequest(version=v.version),
                   pb.DestroyMasterKeyResponse)
            done.append(v.version)
    return done


# ----------------------------------------------------------------- ledger

class Ledger:
    """What the daemon acknowledged, and what was in flight when it died.

    Puts: attribute zip of consumer cid; each consumer is written by one
    thread at a time, then retired (never written again) and may be deleted.
    Deletions: acknowledged (request id -> consumer, receipt bytes) or in
    flight (to retry with the same request ids). Consents: research granted
    or not, on consumers never deleted.
    """

    def __init__(self):
        self.mu = threading.Lock()
        self.value = {}          # cid -> acknowledged zip
        self.maybe = {}          # cid -> set of zips in flight
        self.retired = []        # cids no longer written, not yet deleted
        self.deleted = {}        # request id -> (cid, signed_bytes)
        self.deleted_cids = set()
        self.del_inflight = {}   # request id -> cid
        self.consent = {}        # cid -> acknowledged granted
        self.consent_maybe = {}  # cid -> set of granted in flight
        self.acks = {"put": 0, "delete": 0, "consent": 0, "rotation": 0,
                     "destroy": 0, "read": 0}
        self.next_req = 0

    def put_begin(self, cid, zipv):
        with self.mu:
            self.maybe.setdefault(cid, set()).add(zipv)

    def put_ack(self, cid, zipv):
        with self.mu:
            self.value[cid] = zipv
            self.maybe.pop(cid, None)
            self.acks["put"] += 1

    def retire(self, cid):
        with self.mu:
            self.retired.append(cid)

    def take_for_deletion(self, n):
        with self.mu:
            out = []
            while self.retired and len(out) < n:
                cid = self.retired.pop(0)
                self.next_req += 1
                rid = f"dsr-{self.next_req}"
                self.del_inflight[rid] = cid
                out.append((cid, rid))
            return out

    def delete_ack(self, pairs, receipts):
        with self.mu:
            for (cid, rid), rec in zip(pairs, receipts):
                assert rec.request_id == rid
                self.deleted[rid] = (cid, bytes(rec.signed_bytes))
                self.deleted_cids.add(cid)
                self.del_inflight.pop(rid, None)
                self.acks["delete"] += 1

    def consent_begin(self, cid, granted):
        with self.mu:
            self.consent_maybe.setdefault(cid, set()).add(granted)

    def consent_ack(self, cid, granted):
        with self.mu:
            self.consent[cid] = granted
            self.consent_maybe.pop(cid, None)
            self.acks["consent"] += 1

    def count(self, kind):
        with self.mu:
            self.acks[kind] += 1


# --------------------------------------------------------------- workload

def transient(e):
    """An error a killed or restarting daemon gives: the call stays in flight."""
    return isinstance(e, grpc.RpcError)


class Workload:
    """Concurrent puts, batched deletions, consent changes, reads and (with
    rotate=True) rotations and destructions, until stop() or the daemon dies.
    Every error leaves its operation in flight in the ledger; errors
    other than UNAVAILABLE/CANCELLED while the daemon is alive are kept in
    self.errors."""

    def __init__(self, d, ledger, seed, put_threads=3, rotate=False,
                 consent_cids=(), delete_batch=8, pause=0.0, rotate_pause=0.2,
                 rotations=-1):
        self.d, self.ledger = d, ledger
        self.rng = random.Random(seed)
        self.put_threads, self.rotate_on = put_threads, rotate
        self.consent_cids = list(consent_cids)
        self.delete_batch, self.pause = delete_batch, pause
        self.rotate_pause = rotate_pause
        self.rotations_left = rotations     # -1: no limit
        self.stopping = threading.Event()
        self.errors = []
        self.threads = []
        self.seed = seed

    def _run(self, fn, *args):
        def body():
            ch = self.d.channel()
            try:
                while not self.stopping.is_set():
                    try:
                        fn(ch, *args)
                    except grpc.RpcError as e:
                        if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.CANCELLED,
                                            grpc.StatusCode.DEADLINE_EXCEEDED) \
                                and self.d.alive():
                            self.errors.append(f"{fn.__name__}: {e.code()} {e.details()}")
                        if not self.d.alive():
                            return
                        time.sleep(0.05)
                    if self.pause:
                        time.sleep(self.pause)
            finally:
                ch.close()
        t = threading.Thread(target=body, daemon=True)
        t.start()
        self.threads.append(t)

    def start(self):
        for i in range(self.put_threads):
            self._run(self._put, [f"s{self.seed}-t{i}", 0])
        self._run(self._delete)
        if self.consent_cids:
            self._run(self._consent, random.Random(self.seed + 1))
        self._run(self._read, random.Random(self.seed + 2))
        if self.rotate_on:
            self._run(self._rotate)
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in self.threads), "workload hung"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------- operations
    def _put(self, ch, state):
        prefix, n = state
        cid = f"{prefix}-{n // 2}"
        zipv = f"{n % 100000}"
        self.ledger.put_begin(cid, zipv)
        self.d.call("/vault.v1.Consumers/PutAttributes",
                    pb.PutAttributesRequest(consumer_id=cid, attributes=[
                        pb.Attribute(name="zip", value=zipv),
                        pb.Attribute(name="device", value="mobile")]),
                    pb.PutAttributesResponse, channel=ch, timeout=30)
        self.ledger.put_ack(cid, zipv)
        state[1] = n + 1
        if n % 2 == 1:
            self.ledger.retire(cid)

    def _delete(self, ch):
        pairs = self.ledger.take_for_deletion(self.delete_batch)
        if not pairs:
            time.sleep(0.02)
            return
        req = pb.DeleteConsumersRequest(requests=[
            pb.DeleteConsumerRequest(consumer_id=c, request_id=r) for c, r in pairs])
        recs = self.d.call("/vault.v1.Deletion/DeleteConsumers", req,
                           pb.DeleteConsumersResponse, channel=ch,
                           timeout=30).receipts
        self.ledger.delete_ack(pairs, recs)

    def _consent(self, ch, rng):
        cid = rng.choice(self.consent_cids)
        granted = rng.random() < 0.5
        self.ledger.consent_begin(cid, granted)
        self.d.call("/vault.v1.Consumers/SetConsent",
                    pb.SetConsentRequest(consumer_id=cid, purpose="research",
                                         granted=granted, source="api"),
                    pb.SetConsentResponse, channel=ch, timeout=30)
        self.ledger.consent_ack(cid, granted)

    def _read(self, ch, rng):
        with self.ledger.mu:
            cids = list(self.ledger.value)
        if not cids:
            time.sleep(0.02)
            return
        cid = rng.choice(cids)
        try:
            self.d.call("/vault.v1.Consumers/GetAttributes",
                        pb.GetAttributesRequest(consumer_id=cid, names=["zip"],
                                                purpose="service"),
                        pb.GetAttributesResponse, channel=ch, timeout=30)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        self.ledger.count("read")
        time.sleep(0.005)

    def _rotate(self, ch):
        if self.rotations_left == 0:
            time.sleep(0.05)
            return
        time.sleep(self.rotate_pause)
        self.rotations_left -= 1
        try:
            rotate(self.d)
            self.ledger.count("rotation")
            for _ in destroy_retired(self.d):
                self.ledger.count("destroy")
        except grpc.RpcError as e:
            # A resumed rotation still under way, or a destroy racing it.
            if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise


def preload(d, ledger, n, prefix="pre", consent_n=20):
    """n consumers written and retired; consent_n of them (never deleted)
    with research consent granted. Returns the consent consumers."""
    ch = d.channel()
    try:
        for i in range(n):
            cid, zipv = f"{prefix}-{i}", f"{i}"
            ledger.put_begin(cid, zipv)
            d.call("/vault.v1.Consumers/PutAttributes",
                   pb.PutAttributesRequest(consumer_id=cid, attributes=[
                       pb.Attribute(name="zip", value=zipv)]),
                   pb.PutAttributesResponse, channel=ch)
            ledger.put_ack(cid, zipv)
            if i >= consent_n:
                ledger.retire(cid)
    finally:
        ch.close()
    cons = [f"{prefix}-{i}" for i in range(min(consent_n, n))]
    for cid in cons:
        ledger.consent_begin(cid, True)
        set_consent(d, cid, True)
        ledger.consent_ack(cid, True)
    return cons


# ------------------------------------------------------------- invariants

def retry_deletions(d, ledger):
    """Repeats every deletion left in flight, with the same request ids."""
    with ledger.mu:
        pairs = [(c, r) for r, c in ledger.del_inflight.items()]
    for i in range(0, len(pairs), 100):
        chunk = pairs[i:i + 100]
        ledger.delete_ack(chunk, delete_many(d, chunk))
    return len(pairs)


def wait_rotation(d, timeout=120):
    deadline = time.monotonic() + timeout
    while key_status(d).rotation_in_progress:
        assert time.monotonic() < deadline, "the interrupted rotation never completed"
        time.sleep(0.05)


def check_invariants(d, ledger, sample=None, rng=None):
    """Raises AssertionError naming the first loss. sample: check at most
    that many consumers of each kind (all when None). Returns losses (0)."""
    retry_deletions(d, ledger)
    wait_rotation(d)
    with ledger.mu:
        values = dict(ledger.value)
        maybe = {k: set(v) for k, v in ledger.maybe.items()}
        deleted = dict(ledger.deleted)
        deleted_cids = set(ledger.deleted_cids)
        consent = dict(ledger.consent)
        consent_maybe = {k: set(v) for k, v in ledger.consent_maybe.items()}
    pick = lambda xs: xs if sample is None or len(xs) <= sample \
        else (rng or random).sample(xs, sample)
    ch = d.channel()
    try:
        # Every acknowledged put readable, with its value (or one in flight).
        live = [c for c in set(values) | set(maybe) if c not in deleted_cids]
        # The operations in flight at the kill are always among those checked.
        for cid in set(pick(sorted(live))) | (set(maybe) - deleted_cids):
            ok = set(maybe.get(cid, ()))
            if cid in values:
                ok.add(values[cid])
            try:
                got = {a.name: a.value for a in d.call(
                    "/vault.v1.Consumers/GetAttributes",
                    pb.GetAttributesRequest(consumer_id=cid, names=["zip"],
                                            purpose="service"),
                    pb.GetAttributesResponse, channel=ch).attributes}
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
                assert cid not in values, f"acknowledged put of {cid} lost"
                continue
            assert got.get("zip") in ok, \
                f"{cid}: read {got.get('zip')!r}, acknowledged {sorted(ok)}"
        # Every acknowledged deletion: NOT_FOUND; its request id, same receipt.
        for rid in pick(sorted(deleted)):
            cid, signed = deleted[rid]
            try:
                d.call("/vault.v1.Consumers/GetAttributes",
                       pb.GetAttributesRequest(consumer_id=cid, names=["zip"],
                                               purpose="service"),
                       pb.GetAttributesResponse, channel=ch)
                raise AssertionError(f"deleted consumer {cid} is readable")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
        rids = pick(sorted(deleted))[:100]
        if rids:
            again = delete_many(d, [(deleted[r][0], r) for r in rids])
            for r, rec in zip(rids, again):
                assert bytes(rec.signed_bytes) == deleted[r][1], \
                    f"request {r} got a different receipt after the restart"
        # Consents: the acknowledged state (or one in flight).
        for cid in pick(sorted(set(consent) | set(consent_maybe))):
            ok = set(consent_maybe.get(cid, ()))
            if cid in consent:
                ok.add(consent[cid])
            got = consents(d, cid).get("research")
            assert got in ok, f"{cid}: consent {got}, acknowledged {sorted(ok)}"
    finally:
        ch.close()
    check_keys(d)
    v = verify_audit(d)
    assert v.ok and v.first_bad_seq == 0, f"audit chain broken at {v.first_bad_seq}"
    return 0


def check_keys(d):
    """No usable key file of a destroyed version."""
    for v in key_status(d).versions:
        if v.state != "destroyed":
            continue
        for path in (d.data_dir / "keys" / f"master-{v.version}.key",
                     d.data_dir / f"master-{v.version}.key"):
            if path.exists():
                assert path.stat().st_size != 32, \
                    f"{path} holds a key of destroyed version {v.version}"
