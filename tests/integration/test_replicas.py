"""Several vaultd replicas on one store (issue 15, point 2).

Two real vaultd processes open ONE LMDB store directory: LMDB's lock file
serializes their write transactions and each write transaction sees the
other's last commit, which is what replicas over one PostgreSQL database
see. They share the keys directory (as replicas share a PKCS#11 token) and
each has its own replica_name and audit journal (journal_dir). What is
checked is the in-memory state of one replica that the other's writes make
stale: the keyring, the journal's sequence, the maintenance lease.
"""
import re
import signal
import subprocess
import threading
import time
import urllib.request

import grpc
import pytest

from conftest import VAULTD, Daemon, free_port, pb
from test_deletion import key_status, watch
from test_features import fetch, rows
from test_rotation import destroy, rotate, versions

EXPORT = "/vault.v1.Consumers/ExportConsumer"
WAIT_S = 10     # a deadline for what takes about a second, not a speed check


class Replica(Daemon):
    """A second vaultd on another daemon's data directory, with a config of
    its own (replica_name, journal_dir) and its own metrics port."""

    def __init__(self, data_dir, name, conf):
        super().__init__(data_dir)
        self.name = name
        self.conf = conf
        self.metrics_port = free_port()
        self.log_path = self.data_dir.parent / f"replica-{name}.log"

    def spawn(self, *extra, listen=None):
        self.log_file = open(self.log_path, "ab")
        args = ["--config", str(self.conf), "--listen", listen or self.addr,
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *extra]
        self.proc = subprocess.Popen([VAULTD, *args], stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        return self.proc

    def take_new_ports(self, log):
        if f"cannot serve metrics on 127.0.0.1:{self.metrics_port}" in log:
            self.metrics_port = free_port()
            return True
        return super().take_new_ports(log)

    def metric(self, name):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        assert m, f"{name} missing from the metrics"
        return float(m.group(1))


def replica_conf(base, name, extra=""):
    # A vault made on PostgreSQL carries a name already: each gets its own.
    base = re.sub(r'^replica_name = .*\n', '', base, flags=re.M)
    return base + (f'\nreplica_name = "{name}";\njournal_dir = "journal-{name}";\n'
                   "janitor_interval_ms = 200;\n" + extra)


def start_pair(tmp_path, extra=""):
    """Replicas a and b on one store; a starts first (it takes the lease)."""
    first = Daemon(tmp_path / "vault")
    first.start()
    assert first.stop() == 0
    base = (first.data_dir / "vaultd.conf").read_text()
    pair = []
    for name in ("a", "b"):
        conf = first.data_dir / f"vaultd-{name}.conf"
        conf.write_text(replica_conf(base, name, extra))
        pair.append(Replica(first.data_dir, name, conf))
    for d in pair:
        d.start()
    return pair


def stop_pair(pair):
    for d in pair:
        if d.proc is not None:
            assert d.stop() == 0, d.log()


@pytest.fixture
def pair(tmp_path):
    p = start_pair(tmp_path)
    yield p
    stop_pair(p)


def wait_for(what, cond, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def export(d, cid):
    return d.call(EXPORT, pb.ExportConsumerRequest(consumer_id=cid),
                  pb.ExportConsumerResponse)


def verify_audit(d):
    return d.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                  pb.VerifyAuditResponse)


def reads_of(d, cid):
    return [h for h in export(d, cid).access_history if h.kind == "read"]


# ------------------------------------------------------------------ data

def test_writes_of_each_replica_are_read_on_the_other(pair):
    a, b = pair
    a.put("ann", email="ann@example.test", age="31")
    b.put("bo", email="bo@example.test", age="42")
    assert b.get("ann", ["email", "age"]) == {"email": "ann@example.test", "age": "31"}
    assert a.get("bo", ["email", "age"]) == {"email": "bo@example.test", "age": "42"}
    # Either replica deletes; both see it at once (one store).
    a.delete("bo", request_id="dsr-bo")
    with pytest.raises(grpc.RpcError) as e:
        b.get("bo")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    again = b.delete("bo", request_id="dsr-bo")
    assert again.found and again.request_id == "dsr-bo"


def test_page_token_of_one_replica_resumes_on_the_other(pair):
    a, b = pair
    for i in range(6):
        a.put(f"p{i}", age=str(20 + i), device="mobile", income_band="middle",
              converted="true")
    first = fetch(a, "training", dataset="pages", batch_size=2, limit_batches=1)
    assert len(first[0].rows) == 2 and first[0].next_page_token
    token = first[0].next_page_token
    on_b = rows(fetch(b, "training", dataset="pages", batch_size=2, page_token=token))
    on_a = rows(fetch(a, "training", dataset="pages", batch_size=2, page_token=token))
    # The same rows after the token, whichever replica resumes the stream
    # (rare values are counted over the rows a call releases: compared
    # with the same call on a, not with the whole stream).
    assert on_b == on_a and len(on_b) == 4
    assert not set(on_b) & set(rows(first))


def test_watch_on_one_replica_sees_deletions_of_both_in_order(pair):
    a, b = pair
    ids = [f"w{i}" for i in range(6)]
    for cid in ids:
        a.put(cid, age="30", device="mobile", income_band="middle", converted="true")
    assert len(rows(fetch(a, "training", dataset="wds"))) == 6
    got = []
    t = threading.Thread(target=lambda: got.extend(
        watch(b, dataset_id="wds", follow=True, timeout=60, limit=6)))
    t.start()
    for i, cid in enumerate(ids):
        (a if i % 2 == 0 else b).delete(cid)
    t.join(60)
    assert not t.is_alive()
    seqs = [e.seq for e in got]
    assert len(seqs) == 6 and seqs == list(range(seqs[0], seqs[0] + 6)), seqs
    assert len({bytes(e.pseudonym) for e in got}) == 6
    # Replayed from the start on the other replica: the same events.
    assert [e.seq for e in watch(a, dataset_id="wds")] == seqs


# ------------------------------------------------------------------ keys

def test_rotation_on_one_replica_reaches_the_other(pair):
    a, b = pair
    for i in range(20):
        a.put(f"k{i}", email=f"k{i}@example.test")
    # b has served writes under version 1 and holds it.
    b.put("b-before", email="b-before@example.test")
    done = rotate(a)[-1]
    assert done.done and done.new_version == 2

    # b's next write wraps its new DEK under version 2, not the 1 it had.
    b.put("b-after", email="b-after@example.test")
    vs = versions(a)
    assert vs[1].dek_count == 0 and vs[2].dek_count == 22, vs
    assert key_status(b).active_version == 2
    # b reads what a rewrapped under a version b never loaded at start.
    assert b.get("k7", ["email"]) == {"email": "k7@example.test"}

    # Destroying version 1 on a: b, idle, drops it from memory too.
    assert destroy(a, 1).version == 1
    assert not (a.data_dir / "keys" / "master-1.key").exists()
    wait_for("b wipes version 1", lambda:
             "master key version 1 is destroyed in the store: wiped from memory"
             in b.log() or "master key version 1 is being destroyed in the "
             "store: wiped from memory" in b.log())
    wait_for("b's metrics show version 1 destroyed", lambda:
             b.metric('vaultd_master_key_versions{state="destroyed"}') == 1)
    assert versions(b)[1].state == "destroyed"
    assert b.get("k3", ["email"]) == {"email": "k3@example.test"}

    # b starts the next rotation: past the versions a made (3, not 2).
    assert rotate(b)[-1].new_version == 3
    assert key_status(a).active_version == 3
    # The store's active version is refused on either replica, whatever
    # the replica last saw.
    for d in (a, b):
        with pytest.raises(grpc.RpcError) as e:
            destroy(d, 3)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "active" in e.value.details()
    a.put("a-after", email="a-after@example.test")
    assert versions(b)[3].dek_count == 23


# ----------------------------------------------------------------- audit

def test_journals_stay_per_replica_across_restarts(pair):
    a, b = pair
    a.put("jo", email="jo@example.test")
    for _ in range(3):
        b.get("jo", ["email"])
    for _ in range(5):
        a.get("jo", ["email"])
    # b dies without a clean stop, then a reads more (its journal moves on).
    b.stop(sig=signal.SIGKILL)
    for _ in range(2):
        a.get("jo", ["email"])
    b.start()
    for _ in range(4):
        b.get("jo", ["email"])
    assert "misses entry" not in b.log()
    wait_for("every read reaches the chain", lambda: len(reads_of(a, "jo")) == 14)
    assert len(reads_of(b, "jo")) == 14
    seqs = [h.audit_seq for h in export(a, "jo").access_history]
    assert len(seqs) == len(set(seqs))          # none twice
    # A clean restart of each: nothing lost, nothing added.
    assert b.stop() == 0
    b.start()
    assert a.stop() == 0
    a.start()
    assert len(reads_of(b, "jo")) == 14
    for d in (a, b):
        v = verify_audit(d)
        assert v.ok and v.first_bad_seq == 0, v


# ----------------------------------------------------------------- lease

def lease(d):
    return d.metric("vaultd_maintenance_lease_held")


def test_one_replica_holds_the_maintenance_lease(pair):
    a, b = pair
    wait_for("a holds the lease", lambda: lease(a) == 1)
    for _ in range(5):
        assert lease(a) + lease(b) == 1
        time.sleep(0.3)
    assert "replica a holds the maintenance lease" in a.log()
    assert "replica b holds the maintenance lease" not in b.log()

    # The holder dies: b takes over once the lease lapses (3 s).
    a.stop(sig=signal.SIGKILL)
    wait_for("b takes the lease over", lambda: lease(b) == 1)
    assert "replica b holds the maintenance lease" in b.log()
    assert b.metric("vaultd_maintenance_lease_takeovers_total") == 1

    # a comes back and waits; b stops cleanly and gives it up at once.
    a.start()
    assert lease(a) == 0 and lease(b) == 1
    assert b.stop() == 0
    wait_for("a takes the lease back", lambda: lease(a) == 1)


def test_replica_name_is_checked(pair):
    a, _ = pair
    bad = a.data_dir / "vaultd-bad.conf"
    pg = ('store_backend = "postgresql";\n'
          'postgresql_conninfo = "host=/nonexistent dbname=vault";\n')
    for setting, why in [('replica_name = "a/b";', "may hold only"),
                         ('replica_name = "";', "must not be empty"),
                         (f'replica_name = "{"x" * 41}";', "1 to 40"),
                         (pg, "needs replica_name")]:
        # Without the backend's lines a vault on PostgreSQL may carry.
        base = re.sub(r'^(store_backend|postgresql_conninfo) = .*\n', '',
                      a.conf.read_text(), flags=re.M)
        bad.write_text(base.replace('replica_name = "a";', setting))
        out = subprocess.run([VAULTD, "--check-config", str(bad)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and why in out.stderr + out.stdout, out
    bad.write_text(a.conf.read_text())
    out = subprocess.run([VAULTD, "--check-config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out


def test_only_the_holder_runs_the_janitor(tmp_path):
    """Ledger events expire at once (retention 0): every janitor pass that
    finds one logs it, so a janitor running on the replica without the
    lease would show in its log within a few deletions."""
    a, b = p = start_pair(tmp_path, "ledger_retention_s = 0;\n")
    try:
        wait_for("a holds the lease", lambda: lease(a) == 1)
        for i in range(10):
            cid = f"j{i}"
            (a if i % 2 else b).put(cid, age="30", device="mobile",
                                    income_band="middle", converted="true")
            fetch(b, "training", dataset=f"jds{i}")
            (b if i % 2 else a).delete(cid)
            wait_for("the holder expires the event", lambda: a.log().count(
                "expired 1 deletion ledger events") + a.log().count(
                "expired 2 deletion ledger events") >= 1)
        time.sleep(0.5)     # a few more passes of both janitors, if b ran one
        assert "deletion ledger events" in a.log()
        assert "deletion ledger events" not in b.log()
        assert lease(b) == 0
    finally:
        stop_pair(p)


@pytest.mark.lmdb_only  # the store lock is LMDB's; on PostgreSQL all are replicas
def test_a_single_node_serves_its_store_alone(tmp_path):
    """A vaultd without replica_name never re-reads the key versions from
    the store, so no other process may serve its store: not a second one
    with a journal of its own (the journal's lock would not see it), not a
    replica; and a single node cannot join running replicas."""
    single = Daemon(tmp_path / "vault")
    single.start()
    try:
        base = (single.data_dir / "vaultd.conf").read_text()
        conf = single.data_dir / "vaultd-second.conf"
        conf.write_text(base + '\njournal_dir = "journal-second";\n')
        second = Replica(single.data_dir, "second", conf)
        second.spawn()
        assert second.wait_exit() != 0
        assert "another vaultd serves this store" in second.log(), second.log()
        conf = single.data_dir / "vaultd-r.conf"
        conf.write_text(replica_conf(base, "r"))
        replica = Replica(single.data_dir, "r", conf)
        replica.spawn()
        assert replica.wait_exit() != 0
        assert "without replica_name serves this store" in replica.log(), \
            replica.log()
        single.put("still-served", zip="1")
    finally:
        assert single.stop() == 0

    (tmp_path / "pair").mkdir()
    pair = start_pair(tmp_path / "pair")
    try:
        late = Daemon(pair[0].data_dir)
        late.log_path = late.data_dir.parent / "late.log"
        late.spawn()
        assert late.wait_exit() != 0
        assert "another vaultd serves this store" in late.log(), late.log()
        pair[1].put("pair-served", zip="2")
    finally:
        stop_pair(pair)
