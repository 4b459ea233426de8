"""vaultd replicas on the Patroni cluster, under failures (issue 15, point 5).

One topology for the module (`scripts/cluster up DIR --vaultd VAULTD`: etcd,
two PostgreSQL 15 nodes under Patroni in synchronous_mode_strict, HAProxy to
the leader, three vaultd replicas on PostgreSQL through it, nginx in front).
Each test starts with `scripts/cluster up`, which restarts whatever an
earlier test left down, and the tests run in file order, cheapest first:

1. a page token made by one replica resumes on another (replicas by port);
2. kill -9 of one replica while clients call through nginx: they retry only
   idempotent calls (reads, deletions with a request id) and keep working;
   `up` restarts the replica;
3. an online rotation on one replica while another is killed and restarted:
   it finishes, every replica reads every consumer under the new version, and
   the old version can be destroyed;
4. a commit PostgreSQL made on the primary only (its wait for the
   synchronous standby cancelled) is not acknowledged;
5. kill -9 of the PostgreSQL leader's node (Patroni and PostgreSQL) during
   eight writers calling PutAttributes and DeleteConsumer through nginx: every
   acknowledged write is read back exactly, deletions stay deleted, a
   deletion repeated with its request id returns the identical receipt, and
   the audit chain verifies on every replica. The failover time (kill to the
   first PutAttributes acknowledged through vaultd) is printed, and appended
   to $CLUSTER_FAILOVER_LOG when set.

Needs root and scripts/deps' packages. VAULTD (default build/vaultd) names
the daemon; its vaultctl must be next to it (scripts/cluster's health checks).
/usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/cluster/test_cluster_vaultd.py
"""

import concurrent.futures
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import psycopg2
import pytest

from test_cluster_pg import (CLUSTER, ROOT, cluster, kill_leader, leader, marked,
                             new_leader, patroni_pids, postmaster_pids,
                             read_env, wait_until)

# The integration suite's client (generated pb modules, call helpers).
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import SANITIZER_MARKS, Daemon, pb  # noqa: E402
from test_features import consent, fetch, rows  # noqa: E402

VAULTD = os.environ.get("VAULTD", str(ROOT / "build" / "vaultd"))
REPLICAS = 3
WRITERS = 8                 # concurrent writer clients, as in issue 15
CALL_TIMEOUT = 5            # seconds: every call has a deadline

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("patroni") is None
    or shutil.which("nginx") is None or not os.access(VAULTD, os.X_OK),
    reason="needs root, scripts/deps' packages and a vaultd build (VAULTD)")


# ------------------------------------------------------------------ clients

def endpoint(d, port):
    """A client of the vault at 127.0.0.1:port with the cluster's token
    (every role): conftest's Daemon, pointed at a running process."""
    ep = Daemon(Path(d, "vault", "shared"), extra_conf="")
    ep.port = int(port)
    ep.addr = f"127.0.0.1:{port}"
    return ep


def through_nginx(d, env):
    return endpoint(d, env["NGINX_PORT"])


def replica(d, env, i):
    return endpoint(d, env[f"VAULTD{i}_PORT"])


def put(ep, ch, cid, value):
    req = pb.PutAttributesRequest(consumer_id=cid, attributes=[
        pb.Attribute(name="email", value=value)])
    return ep.call("/vault.v1.Consumers/PutAttributes", req,
                   pb.PutAttributesResponse, timeout=CALL_TIMEOUT, channel=ch)


def get(ep, ch, cid):
    """The consumer's email, None when it does not exist."""
    req = pb.GetAttributesRequest(consumer_id=cid, names=["email"],
                                  purpose="service")
    try:
        r = ep.call("/vault.v1.Consumers/GetAttributes", req,
                    pb.GetAttributesResponse, timeout=CALL_TIMEOUT, channel=ch)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return {a.name: a.value for a in r.attributes}.get("email")


def delete(ep, ch, cid, request_id):
    req = pb.DeleteConsumerRequest(consumer_id=cid, request_id=request_id)
    return ep.call("/vault.v1.Deletion/DeleteConsumer", req, pb.DeletionReceipt,
                   timeout=CALL_TIMEOUT, channel=ch)


def key_status(ep):
    return ep.call("/vault.v1.Keys/GetKeyStatus", pb.GetKeyStatusRequest(),
                   pb.GetKeyStatusResponse, timeout=CALL_TIMEOUT)


def verify_audit(ep):
    return ep.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                   pb.VerifyAuditResponse, timeout=60)


def retried(fn, attempts=20, pause=0.25):
    """fn() for an idempotent call: repeated on a failure of transport or
    availability (the outcome of the earlier attempt does not matter)."""
    for n in range(attempts):
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.DEADLINE_EXCEEDED) \
                    or n == attempts - 1:
                raise
            time.sleep(pause)


def unique_value(tag):
    """A value no other call writes: a lost or swapped write shows."""
    return f"{tag}-{secrets.token_hex(6)}@example.test"


def read_all(ep, expected, workers=4):
    """{cid: value read} for every cid of expected, on 4 channels."""
    cids = sorted(expected)
    chunks = [cids[k::workers] for k in range(workers)]

    def read_chunk(chunk):
        with ep.channel() as ch:
            return {c: retried(lambda: get(ep, ch, c)) for c in chunk}

    out = {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for part in pool.map(read_chunk, chunks):
            out.update(part)
    return out


def assert_reads(ep, expected, where):
    got = read_all(ep, expected)
    wrong = {c: (v, got[c]) for c, v in expected.items() if got[c] != v}
    assert not wrong, (f"{where}: {len(wrong)} of {len(expected)} consumers"
                       f" read back wrong (expected, got): {list(wrong.items())[:5]}")


def load(ep, prefix, n, workers=WRITERS):
    """n consumers through ep, each with a unique value; {cid: value}."""
    def load_chunk(k):
        out = {}
        with ep.channel() as ch:
            for i in range(k, n, workers):
                cid, value = f"{prefix}-{i}", unique_value(f"{prefix}{i}")
                put(ep, ch, cid, value)
                out[cid] = value
        return out

    out = {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for part in pool.map(load_chunk, range(workers)):
            out.update(part)
    return out


# ----------------------------------------------------------------- topology

def vaultd_pid(d, i):
    return int(Path(d, "run", f"vaultd-{i}.pid").read_text())


def sanitizer_reports(d):
    """The replicas' logs that hold a sanitizer report (ASan build)."""
    bad = []
    for log in sorted(Path(d, "logs").glob("vaultd-*.log")):
        text = log.read_text(errors="replace")
        bad += [f"{log.name}: {m}" for m in SANITIZER_MARKS if m in text]
    return bad


@pytest.fixture(scope="module")
def topology():
    # Not pytest's tmp_path: PostgreSQL runs as postgres, which must reach
    # the data directories through every parent.
    d = tempfile.mkdtemp(prefix="vault-cluster-", dir="/tmp")
    os.chmod(d, 0o711)
    try:
        t0 = time.monotonic()
        cluster("up", d, "--vaultd", VAULTD, "--replicas", str(REPLICAS),
                timeout=180)
        print(f"cluster with {REPLICAS} vaultd replicas up in"
              f" {time.monotonic() - t0:.1f}s")
        yield d, read_env(d)
        t0 = time.monotonic()
        cluster("down", d, timeout=90)
        print(f"cluster down in {time.monotonic() - t0:.1f}s")
        keep = os.environ.get("CLUSTER_KEEP_LOGS")
        if keep:
            shutil.copytree(Path(d, "logs"), keep, dirs_exist_ok=True)
        assert marked(d) == [], f"processes left after down: {marked(d)}"
        # The replicas stopped by down's SIGTERM wrote their sanitizer
        # reports (on build-san/) into their logs.
        assert sanitizer_reports(d) == []
    finally:
        subprocess.run([CLUSTER, "down", d], capture_output=True, timeout=90)
        if not marked(d):
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"kept {d}: processes {marked(d)} still running")


@pytest.fixture
def up(topology):
    """The topology with everything running (an earlier test may have
    killed a part and failed before its own `up`)."""
    d, env = topology
    cluster("up", d, timeout=150)
    return d, env


# ---------------------------------------------------------------- 1. pages

def test_page_token_resumes_on_another_replica(up):
    d, env = up
    a, b, c = (replica(d, env, i) for i in (1, 2, 3))
    for i in range(40):
        a.put(f"pg-{i}", age=str(20 + i % 40), device="mobile",
              income_band="middle", converted="true")
    # research is opt-in: only the consumers who consented are released.
    for i in range(0, 40, 4):
        consent(b, f"pg-{i}", "research", True)
    full = rows(fetch(c, "research", dataset="ds-pages", batch_size=3))
    assert len(full) == 10
    part = fetch(a, "research", dataset="ds-pages", batch_size=3, limit_batches=2)
    assert len(part) == 2 and part[-1].next_page_token
    token = part[-1].next_page_token
    for other in (b, c):
        rest = fetch(other, "research", dataset="ds-pages", batch_size=3,
                     page_token=token)
        seen = [bytes(r.pseudonym) for batch in part + rest for r in batch.rows]
        assert len(seen) == len(set(seen)) == 10, f"on {other.addr}"
        assert set(seen) == set(full)
        assert rest[-1].next_page_token == ""
    # A token is bound to its query on every replica.
    with pytest.raises(grpc.RpcError) as e:
        fetch(b, "research", dataset="ds-other", batch_size=3, page_token=token)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------- 2. a replica dies

class ProxyClient(threading.Thread):
    """Through nginx, in a loop: PutAttributes of a new consumer (never
    retried: not idempotent), GetAttributes of it and, every third round,
    DeleteConsumer of it with a request id (both retried on UNAVAILABLE or a
    deadline, as a client may)."""

    def __init__(self, ep, k):
        super().__init__(daemon=True)
        self.ep, self.k = ep, k
        self.rounds = 0
        self.written = {}           # cid: value, acknowledged
        self.unknown = {}           # cid: value of a PutAttributes that failed
        self.deleted = set()
        self.failures = []          # idempotent calls that failed after retries
        self.stop = threading.Event()

    def run(self):
        with self.ep.channel() as ch:
            while not self.stop.is_set():
                self.rounds += 1
                cid = f"px-{self.k}-{self.rounds}"
                value = unique_value(cid)
                try:
                    put(self.ep, ch, cid, value)
                except grpc.RpcError as e:
                    self.unknown[cid] = (value, e.code().name)
                    continue
                self.written[cid] = value
                try:
                    got = retried(lambda: get(self.ep, ch, cid))
                    assert got == value, f"{cid}: read {got!r}"
                    if self.rounds % 3 == 0:
                        rid = f"rid-{cid}"
                        retried(lambda: delete(self.ep, ch, cid, rid))
                        self.deleted.add(cid)
                except (grpc.RpcError, AssertionError) as e:
                    self.failures.append(f"{cid}: {e}")


def test_replica_killed_behind_nginx(up):
    d, env = up
    ep = through_nginx(d, env)
    clients = [ProxyClient(ep, k) for k in range(6)]
    for c in clients:
        c.start()
    rounds = lambda: sum(c.rounds for c in clients)
    wait_until("60 rounds through nginx", lambda: rounds() >= 60, 60)
    at_kill = rounds()
    os.kill(vaultd_pid(d, 2), signal.SIGKILL)
    wait_until("200 more rounds after the kill",
               lambda: rounds() >= at_kill + 200, 90)
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(3 * CALL_TIMEOUT)
        assert not c.is_alive()

    failures = [f for c in clients for f in c.failures]
    unknown = {cid: v for c in clients for cid, v in c.unknown.items()}
    print(f"replica kill: {rounds()} rounds, {at_kill} before the kill;"
          f" PutAttributes failed (in flight on the dead replica): {len(unknown)}"
          f" {sorted({code for _, code in unknown.values()})}")
    assert failures == []
    # Only a call the dead replica held can fail: one per client at most.
    assert len(unknown) <= len(clients), unknown

    r = subprocess.run([CLUSTER, "status", d], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and any(
        l.startswith("vaultd-2") and l.endswith("DOWN")
        for l in r.stdout.splitlines()), r.stdout
    out = cluster("up", d, timeout=120)
    assert "starting vaultd-2" in out and "starting vaultd-1" not in out
    cluster("status", d, timeout=60)

    # The restarted replica reads what was written while it was dead: the
    # acknowledged values, the deletions, and for a failed PutAttributes
    # either nothing or exactly the value it carried.
    back = replica(d, env, 2)
    expected = {cid: (None if cid in c.deleted else v)
                for c in clients for cid, v in c.written.items()}
    assert_reads(back, expected, "vaultd-2 after its restart")
    got = read_all(back, unknown)
    assert all(got[cid] in (None, v) for cid, (v, _) in unknown.items()), got


# ---------------------------------------------- 3. rotation and a restart

def test_rotation_while_a_replica_restarts(up):
    d, env = up
    eps = [replica(d, env, i) for i in range(1, REPLICAS + 1)]
    nginx = through_nginx(d, env)
    t_load = time.monotonic()
    before = load(nginx, "rot", 2000)
    print(f"{len(before)} consumers loaded in {time.monotonic() - t_load:.1f}s")
    old = key_status(eps[0]).active_version
    progress, t_done = [], []
    killed = threading.Event()

    def on_progress(p):
        progress.append(p)
        if not killed.is_set():
            # The rotation has started on replica 1: replica 2 dies now.
            os.kill(vaultd_pid(d, 2), signal.SIGKILL)
            killed.set()
        return False

    def rotate():
        with eps[0].channel() as ch:
            for p in eps[0].stream(ch, "/vault.v1.Keys/RotateMasterKey",
                                   pb.RotateMasterKeyRequest(),
                                   pb.RotationProgress, timeout=120):
                on_progress(p)
        t_done.append(time.monotonic())

    # Writers during the rotation, through nginx and directly on replica 3.
    during, writing = {}, threading.Event()

    def write_during(ep, tag):
        with ep.channel() as ch:
            n = 0
            while not writing.is_set():
                n += 1
                cid, value = f"{tag}-{n}", unique_value(f"{tag}{n}")
                try:
                    put(ep, ch, cid, value)
                    during[cid] = value
                except grpc.RpcError:
                    time.sleep(0.05)    # outcome unknown: not expected

    t0 = time.monotonic()
    writers = [threading.Thread(target=write_during, args=(ep, tag), daemon=True)
               for ep, tag in ((nginx, "rw-nginx"), (eps[2], "rw-3"))]
    rotation = threading.Thread(target=rotate, daemon=True)
    for t in writers + [rotation]:
        t.start()
    killed.wait(30)
    assert killed.is_set(), "the rotation sent no progress"
    t_kill = time.monotonic()
    out = cluster("up", d, timeout=120)
    t_up = time.monotonic()
    assert "starting vaultd-2" in out
    rotation.join(120)
    assert not rotation.is_alive()
    writing.set()
    for t in writers:
        t.join(3 * CALL_TIMEOUT)
    assert progress and progress[-1].done, progress[-1:]
    new = progress[-1].new_version
    assert new > old
    print(f"rotation {old} -> {new}: {len(before)} consumers, done after"
          f" {t_done[0] - t0:.1f}s; replica 2 killed at {t_kill - t0:.1f}s,"
          f" up again at {t_up - t0:.1f}s; {len(during)} consumers written"
          f" during the rotation")
    assert len(during) > 0

    # Every replica, the restarted one too, sees the new version active and
    # no data key left under the old one.
    for ep in eps:
        st = wait_until(f"{ep.addr} reporting version {new} active", lambda:
                        (lambda s: s if s.active_version == new else None)(
                            key_status(ep)), 10)
        assert not st.rotation_in_progress
        vs = {v.version: v for v in st.versions}
        assert vs[old].dek_count == 0, vs[old]
        assert vs[new].dek_count >= len(before) + len(during), vs[new]
    # The old version can go: what depended on it was rewrapped, including
    # the consumers written while the rotation ran.
    r = eps[2].call("/vault.v1.Keys/DestroyMasterKey",
                    pb.DestroyMasterKeyRequest(version=old),
                    pb.DestroyMasterKeyResponse, timeout=60)
    assert r.version == old
    everyone = {**before, **during}
    for ep in eps:
        assert_reads(ep, everyone, f"{ep.addr} after destroying version {old}")
        assert {v.version: v.state for v in key_status(ep).versions}[old] \
            == "destroyed"


# ------------------------------------- 4. a commit the standby lacks

def cancel_sync_waits(env):
    """pg_cancel_backend of every vaultd session waiting for the
    synchronous standby (as an operator's tool or a statement_timeout
    would); the number cancelled."""
    conn = psycopg2.connect(
        host="127.0.0.1", port=int(env["HAPROXY_WRITE_PORT"]),
        dbname="postgres", user="postgres", passfile=env["PGPASSFILE"],
        connect_timeout=2)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT count(pg_cancel_backend(pid))"
                        " FROM pg_stat_activity"
                        " WHERE usename = 'vault' AND wait_event = 'SyncRep'")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_commit_on_the_primary_only_is_not_acknowledged(up):
    """Regression (store_pg.c, top_commit): PostgreSQL answers a COMMIT
    whose wait for the synchronous standby is cancelled with success and a
    WARNING; the commit is then on the primary only. vaultd acknowledged it
    as OK; it must report the outcome unknown (UNAVAILABLE)."""
    d, env = up
    standby = next(n for n in ("pg1", "pg2") if n != leader(env))
    for p in postmaster_pids(d, standby) | patroni_pids(d, standby):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Strict synchronous mode: every commit now waits for a standby.
    ep = replica(d, env, 1)
    cid, value = "sync-lost", unique_value("sync")
    result = []

    def write():
        try:
            with ep.channel() as ch:
                result.append(ep.call(
                    "/vault.v1.Consumers/PutAttributes",
                    pb.PutAttributesRequest(consumer_id=cid, attributes=[
                        pb.Attribute(name="email", value=value)]),
                    pb.PutAttributesResponse, timeout=60, channel=ch))
        except grpc.RpcError as e:
            result.append(e.code())

    t = threading.Thread(target=write, daemon=True)
    t.start()
    cancelled, deadline = 0, time.monotonic() + 60
    while t.is_alive() and time.monotonic() < deadline:
        cancelled += cancel_sync_waits(env)
        time.sleep(0.2)
    t.join(5)
    assert not t.is_alive()
    print(f"standby {standby} killed; {cancelled} commits' waits for it"
          f" cancelled; PutAttributes: {result[0]!r:.60}")
    assert cancelled > 0
    assert result == [grpc.StatusCode.UNAVAILABLE]
    assert "committed on the primary only" in \
        Path(d, "logs", "vaultd-1.log").read_text(errors="replace")

    cluster("up", d, timeout=120)
    # The outcome was unknown: the value is there exactly, or nothing. The
    # first write after the standby's return may wait for the replicas'
    # backlog (leases, journals): a longer deadline than CALL_TIMEOUT.
    with ep.channel() as ch:
        assert retried(lambda: get(ep, ch, cid)) in (None, value)
        ep.call("/vault.v1.Consumers/PutAttributes",
                pb.PutAttributesRequest(consumer_id=cid, attributes=[
                    pb.Attribute(name="email", value=value)]),
                pb.PutAttributesResponse, timeout=30, channel=ch)
        assert retried(lambda: get(ep, ch, cid)) == value


# --------------------------------------------------- 5. the leader dies

class Writer(threading.Thread):
    """One of the eight writers through nginx: PutAttributes of new
    consumers with unique values and, every fourth round, DeleteConsumer of
    an earlier acknowledged one with a request id. A call that failed is
    recorded with what it tried (its outcome is unknown) and never repeated
    during the run."""

    def __init__(self, ep, k):
        super().__init__(daemon=True)
        self.ep, self.k = ep, k
        self.written = {}           # cid: value, acknowledged
        self.put_unknown = {}       # cid: value, failed
        self.receipts = {}          # cid: (request id, receipt), acknowledged
        self.delete_unknown = {}    # cid: request id, failed
        self.put_acks = []          # (attempt's start, its ack): monotonic
        self.stop = threading.Event()

    def run(self):
        n = 0
        with self.ep.channel() as ch:
            while not self.stop.is_set():
                n += 1
                if n % 4 == 0 and self.deletable():
                    self.delete_one(ch)
                    continue
                cid, value = f"fo-{self.k}-{n}", unique_value(f"fo{self.k}.{n}")
                t = time.monotonic()
                try:
                    put(self.ep, ch, cid, value)
                except grpc.RpcError:
                    self.put_unknown[cid] = value
                    time.sleep(0.05)
                    continue
                self.written[cid] = value
                self.put_acks.append((t, time.monotonic()))

    def deletable(self):
        return [c for c in self.written
                if c not in self.receipts and c not in self.delete_unknown]

    def delete_one(self, ch):
        cid = self.deletable()[0]
        rid = f"rid-{cid}-{secrets.token_hex(4)}"
        try:
            self.receipts[cid] = (rid, delete(self.ep, ch, cid, rid))
        except grpc.RpcError:
            self.delete_unknown[cid] = rid
            time.sleep(0.05)


def record(failover_s, acked):
    path = os.environ.get("CLUSTER_FAILOVER_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"vaultd-leader-node-kill failover_s={failover_s:.2f}"
                    f" acked={acked} lost=0\n")


def test_leader_killed_during_writers(up):
    d, env = up
    ep = through_nginx(d, env)
    writers = [Writer(ep, k) for k in range(WRITERS)]
    for w in writers:
        w.start()
    acks = lambda: [a for w in writers for a in list(w.put_acks)]
    wait_until("150 acknowledged PutAttributes", lambda: len(acks()) >= 150, 60)

    acked_at_kill = len(acks())
    old, t_kill = kill_leader(env, d, True)
    # The standby takes the leader key once the dead one's expires; strict
    # synchronous mode then takes no commit until a standby is back: `up`
    # restarts the dead node, which rejoins as one (as test_cluster_pg).
    new = new_leader(d, env, old, t_kill)
    cluster("up", d, timeout=120)
    after = lambda: sorted(a for a in acks() if a[0] > t_kill)
    first = wait_until("a PutAttributes acknowledged after the kill",
                       lambda: sorted(after(), key=lambda a: a[1]), 90)[0]
    failover_s = first[1] - t_kill
    wait_until("100 more acknowledged PutAttributes",
               lambda: len(after()) >= 100, 60)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(3 * CALL_TIMEOUT)
        assert not w.is_alive()

    written = {c: v for w in writers for c, v in w.written.items()}
    receipts = {c: r for w in writers for c, r in w.receipts.items()}
    put_unknown = {c: v for w in writers for c, v in w.put_unknown.items()}
    delete_unknown = {c: r for w in writers for c, r in w.delete_unknown.items()}
    print(f"leader node {old} killed after {acked_at_kill} acknowledged"
          f" PutAttributes; leader now {new}; acknowledged: {len(written)}"
          f" PutAttributes, {len(receipts)} DeleteConsumer; failed (unknown):"
          f" {len(put_unknown)} PutAttributes, {len(delete_unknown)}"
          f" DeleteConsumer; kill -> first acknowledged PutAttributes through"
          f" vaultd: {failover_s:.2f}s")

    with ep.channel() as ch:
        # A deletion repeated with its request id: the identical receipt,
        # whether the first attempt was acknowledged or failed.
        for cid, (rid, receipt) in receipts.items():
            again = retried(lambda: delete(ep, ch, cid, rid))
            assert again == receipt, f"{rid}: a second, different receipt"
        for cid, rid in delete_unknown.items():
            first_r = retried(lambda: delete(ep, ch, cid, rid))
            assert retried(lambda: delete(ep, ch, cid, rid)) == first_r
            receipts[cid] = (rid, first_r)
    # Every acknowledged value, exactly; every deletion stays.
    expected = {c: (None if c in receipts else v) for c, v in written.items()}
    assert_reads(ep, expected, "after the failover")
    got = read_all(ep, put_unknown)
    odd = {c: got[c] for c, v in put_unknown.items() if got[c] not in (None, v)}
    assert not odd, f"failed PutAttributes that wrote another value: {odd}"

    for i in range(1, REPLICAS + 1):
        r = verify_audit(replica(d, env, i))
        assert r.ok and r.first_bad_seq == 0, (i, r)
    print(f"FAILOVER vaultd, leader node kill: {failover_s:.2f}s,"
          f" {len(written)} acknowledged PutAttributes, 0 lost")
    record(failover_s, len(written))
