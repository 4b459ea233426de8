"""Attacks on the PostgreSQL backend and on several replicas over one
database (an outsider's regression tests). Each test states the promise it
attacks. Tests marked FAILS-NOW are weaknesses confirmed and not fixed yet:
they must pass once fixed.

Run: VAULTD=build/vaultd VAULTCTL=build/vaultctl python3 -m pytest -q \
     tests/integration/test_attack_pg.py   (any VAULT_TEST_BACKEND: every
     vault here is on a PostgreSQL of its own)."""
import re
import secrets
import subprocess
import threading
import time

import grpc
import pytest

from conftest import Daemon, pb, running
from pgserver import PgServer, backend_conf
from test_replicas import Replica

LEASE_KEY = 8530228277886089009   # the writers' advisory lock (postgresql.md)


@pytest.fixture(scope="module")
def pg():
    server = PgServer.scratch().start()
    # The most talkative settings a DBA may choose: every statement and
    # every bind parameter goes to PostgreSQL's own log.
    server.psql("ALTER SYSTEM SET log_statement = 'all'")
    server.psql("ALTER SYSTEM SET log_min_duration_statement = 0")
    server.psql("ALTER SYSTEM SET log_parameter_max_length = -1")
    server.psql("ALTER SYSTEM SET log_parameter_max_length_on_error = -1")
    server.psql("SELECT pg_reload_conf()")
    yield server
    server.stop()
    server.remove()


def pg_daemon(tmp_path, pg, name="vault", extra=""):
    db, info = pg.new_database()
    d = Daemon(tmp_path / name, extra_conf=backend_conf(info) + "\n" + extra)
    d.db = db
    return d


@pytest.fixture
def pgd(tmp_path, pg):
    yield from running(pg_daemon(tmp_path, pg))


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def pg_log(pg):
    return (pg.root / "pg" / "log").read_bytes()


# ------------------------------------------------ what PostgreSQL sees

def test_statement_log_with_parameters_holds_no_id_value_or_key(pgd, pg):
    """Held: with log_statement = all, every bind parameter is logged (as
    hex for bytea); none is a consumer id, value or the dev token."""
    secrets_ = []
    for i in range(5):
        cid = f"subj{secrets.token_hex(6)}"
        email = f"m{secrets.token_hex(6)}@example.test"
        pgd.put(cid, email=email, zip=f"{90000 + i}")
        pgd.get(cid)
        secrets_ += [cid, email]
    pgd.delete(secrets_[0])
    log = pg_log(pg)
    assert b"parameters: $1" in log   # the setting is live: params logged
    for s in secrets_ + [pgd.token]:
        assert s.encode() not in log, s
        assert s.encode().hex().encode() not in log.lower(), s


# ------------------------------------------------ a DBA tampers

def rows(pg, db, sp, like_hex=""):
    out = pg.psql(f"SELECT encode(k,'hex'), encode(v,'hex') FROM vaultd.kv "
                  f"WHERE sp = {sp} AND encode(k,'hex') LIKE '%{like_hex}' "
                  "ORDER BY k", db=db)
    return [tuple(l.split("|")) for l in out.splitlines() if l]


def test_values_records_swapped_between_consumers_are_refused(pgd, pg):
    """Held: a DBA swaps two consumers' values records (each consumer's
    values in one record, keyed by its ref): the record's tag binds the
    ref, and each value's AEAD binds ref | name | generation, so both are
    refused; neither consumer is shown the other's values."""
    pgd.put("ann", email="ann@example.com", zip="11111")
    pgd.put("bob", email="bob@example.com", zip="22222")
    pgd.stop()
    out = pg.psql("SELECT encode(k,'hex'), encode(v,'hex') FROM vaultd.kv "
                  "WHERE sp = 1 AND length(k) = 32 ORDER BY k", db=pgd.db)
    (k1, v1), (k2, v2) = [tuple(l.split("|")) for l in out.splitlines() if l]
    pg.psql(f"UPDATE vaultd.kv SET v = CASE k WHEN '\\x{k1}'::bytea THEN "
            f"'\\x{v2}'::bytea ELSE '\\x{v1}'::bytea END WHERE sp = 1 AND "
            f"k IN ('\\x{k1}'::bytea, '\\x{k2}'::bytea)", db=pgd.db)
    pgd.start()
    for cid in ("ann", "bob"):
        for attrs in (["email"], None):
            with pytest.raises(grpc.RpcError) as e:
                pgd.get(cid, attrs) if attrs else pgd.get(cid)
            assert e.value.code() == grpc.StatusCode.DATA_LOSS, e.value


def test_audit_entry_changed_by_a_dba_is_found(tmp_path, pg):
    """Held: an audit entry edited in vaultd.kv is found: vaultd refuses to
    start (audit_broken = "refuse", the default), naming the entry."""
    d = pg_daemon(tmp_path, pg)
    d.start()
    d.put("ann", email="ann@example.com")
    d.get("ann")
    assert d.stop() == 0
    entries = rows(pg, d.db, 7)
    k, v = entries[len(entries) // 2]
    b = bytearray.fromhex(v)
    b[-1] ^= 1
    pg.psql(f"UPDATE vaultd.kv SET v = '\\x{b.hex()}'::bytea WHERE sp = 7 "
            f"AND k = '\\x{k}'::bytea", db=d.db)
    d.spawn()
    assert d.wait_exit(timeout=60) != 0
    assert "the audit log is broken" in d.log(), d.log()


@pytest.mark.parametrize("old", [1, 2, 3])
def test_an_older_format_store_is_upgraded_at_start(tmp_path, pg, old):
    """PostgreSQL has no vaultd --migrate: the steps from formats 1, 2 and
    3 to 4, which change nothing in the tables, are applied when the store
    opens, and the data is served as before."""
    d = pg_daemon(tmp_path, pg)
    d.start()
    d.put("ann", zip="1")
    assert d.stop() == 0
    pg.psql(f"UPDATE vaultd.kv SET v = '\\x0000000{old}'::bytea WHERE sp = 9 "
            "AND k = 'store_format'::bytea", db=d.db)
    d.start()
    assert f"store format {old} upgraded to 4" in d.log(), d.log()
    assert d.get("ann", ["zip"]) == {"zip": "1"}
    assert d.stop() == 0
    assert pg.psql("SELECT encode(v, 'hex') FROM vaultd.kv WHERE sp = 9 AND "
                   "k = 'store_format'::bytea", db=d.db).strip() == "00000004"


def test_store_of_another_format_is_refused_at_start(tmp_path, pg):
    """Held: a store_format record of another version: vaultd refuses to
    start, saying why, and writes nothing."""
    d = pg_daemon(tmp_path, pg)
    d.start()
    d.put("ann", zip="1")
    assert d.stop() == 0
    pg.psql("UPDATE vaultd.kv SET v = '\\x000000ff'::bytea WHERE sp = 9 AND "
            "k = 'store_format'::bytea", db=d.db)
    before = pg.psql("SELECT count(*), sum(length(v)) FROM vaultd.kv", db=d.db)
    d.spawn()
    assert d.wait_exit(timeout=60) != 0
    assert "store format 255" in d.log(), d.log()
    assert pg.psql("SELECT count(*), sum(length(v)) FROM vaultd.kv",
                   db=d.db) == before


# ------------------------------------------------ bad states

def test_writers_lock_held_by_a_stuck_session_fails_writes_unavailable(
        tmp_path, pg):
    """Held: another session holds the writers' advisory lock: a put fails
    UNAVAILABLE within about postgresql_connect_timeout_s, reads go on, and
    once the lock is free writes succeed again."""
    d = pg_daemon(tmp_path, pg, extra="postgresql_connect_timeout_s = 2;")
    d.start()
    try:
        d.put("ann", zip="1")
        info = f"{pg.conninfo} dbname={d.db}"
        holder = subprocess.Popen(
            ["psql", "-X", "-d", info, "-c",
             f"SELECT pg_advisory_lock({LEASE_KEY}); SELECT pg_sleep(8)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        t0 = time.monotonic()
        assert code_of(d.put, "bob", zip="2") == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 < 9
        assert d.get("ann", ["zip"]) == {"zip": "1"}
        holder.wait(timeout=30)
        deadline = time.monotonic() + 10
        while code_of(d.put, "bob", zip="2") != grpc.StatusCode.OK:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert d.get("bob", ["zip"]) == {"zip": "2"}
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0


def test_database_dropped_under_a_running_vault(tmp_path, pg):
    """Held: the database is dropped (connections terminated) while vaultd
    runs: calls fail with a precise status (UNAVAILABLE), vaultd does not
    crash. Once an attempt to connect has given up (5 s), later calls try
    once, not for the timeout again: a get with a 2 s deadline gets
    UNAVAILABLE (the server refuses the dropped database at once), not
    DEADLINE_EXCEEDED."""
    d = pg_daemon(tmp_path, pg, extra="postgresql_connect_timeout_s = 5;")
    d.start()
    try:
        d.put("ann", zip="1")
        pg.psql(f"DROP DATABASE {d.db} WITH (FORCE)")
        assert code_of(d.put, "bob", zip="2") == grpc.StatusCode.UNAVAILABLE
        assert "until a connection succeeds, calls try once" in d.log()
        for _ in range(3):
            assert code_of(d.get, "ann", timeout=2) == \
                grpc.StatusCode.UNAVAILABLE
        assert d.proc.poll() is None
    finally:
        d.stop()


# ------------------------------------------------ several replicas

def lease_pair(tmp_path, pg, names):
    first = pg_daemon(tmp_path, pg)
    first.start()
    assert first.stop() == 0
    base = re.sub(r'^replica_name = .*\n', '',
                  (first.data_dir / "vaultd.conf").read_text(), flags=re.M)
    out = []
    for i, name in enumerate(names):
        conf = first.data_dir / f"vaultd-{i}.conf"
        conf.write_text(base + f'\nreplica_name = "{name}";\n'
                        f'journal_dir = "journal-{i}";\n'
                        "janitor_interval_ms = 200;\n")
        out.append(Replica(first.data_dir, f"{name}-{i}", conf))
    return out


def test_two_replicas_with_one_replica_name_are_not_both_running(
        tmp_path, pg):
    """FIXED (failed before: both held the lease). docs/config.md: replica_name must be "different on every
    replica"; it keys the journal position (journal_seq/<name>) and names
    the lease holder. Two replicas started with the SAME name both hold
    the maintenance lease (two janitors, two rotation resumers), and one
    journal position is shared by two journals (after a crash one
    replica's unmoved entries are skipped or moved twice). The second must
    be refused at start (or, at least, never both hold the lease)."""
    a, b = lease_pair(tmp_path, pg, ["same", "same"])
    a.start()
    try:
        b.spawn()
        deadline = time.monotonic() + 15
        while b.proc.poll() is None and time.monotonic() < deadline:
            try:
                if (a.metric("vaultd_maintenance_lease_held")
                        + b.metric("vaultd_maintenance_lease_held")) > 1:
                    break
            except Exception:
                pass
            time.sleep(0.3)
        if b.proc.poll() is not None:
            b.wait_exit()
            assert "replica_name" in b.log(), b.log()
            return
        held = (a.metric("vaultd_maintenance_lease_held"),
                b.metric("vaultd_maintenance_lease_held"))
        assert sum(held) <= 1, f"both replicas named 'same' hold the lease: {held}"
    finally:
        for d in (a, b):
            if d.proc is not None:
                d.stop()


def test_a_named_replica_killed_then_restarted_starts_again(tmp_path, pg):
    """Held with the fix above: the claim on the name of a replica that was
    killed (SIGKILL: no release) lapses, and the replica starts again."""
    import signal
    (a,) = lease_pair(tmp_path, pg, ["solo"])
    a.start()
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    a.proc = None
    a.log_file.close()
    a.start()
    a.put("ann", zip="1")
    assert a.stop() == 0
    a.start()       # a clean stop gave the name up: no wait
    assert a.stop() == 0


def test_stalled_audit_streams_do_not_starve_other_roles_readers(
        tmp_path, pg):
    """FIXED (failed before: GetAttributes DEADLINE_EXCEEDED after 10 s).
    QueryAudit sent its entries from inside its read transaction; a client
    that does not read (HTTP/2 flow control: the send waits) kept that
    transaction, that is one of the replica's postgresql_pool connections.
    With pool = 2, two stalled auditor streams starved every reader of the
    replica (a GetAttributes waited 10 s, then failed). The scan now ends
    its snapshot before it sends."""
    d = pg_daemon(tmp_path, pg, extra="postgresql_pool = 2;")
    d.start()
    try:
        d.put_many((f"c{i}", {"zip": f"{i:05d}", "email":
                    f"user{i}-with-a-longer-address@example.com"})
                   for i in range(800))
        opts = [("grpc.http2.bdp_probe", 0)]   # the 64 KiB window stays
        chans, calls = [], []
        for _ in range(2):
            ch = grpc.insecure_channel(d.addr, options=opts)
            call = d.stream(ch, "/vault.v1.Audit/QueryAudit",
                            pb.QueryAuditRequest(), pb.AuditEntry, timeout=60)
            next(call)          # started; then never read again
            chans.append(ch)
            calls.append(call)
        time.sleep(1)
        t0 = time.monotonic()
        assert d.get("c1", ["zip"]) == {"zip": "00001"}
        assert time.monotonic() - t0 < 2
        for call in calls:
            call.cancel()
        for ch in chans:
            ch.close()
    finally:
        assert d.stop() == 0


def test_page_token_replayed_for_another_dataset_or_purpose_on_a_replica(
        tmp_path, pg):
    """Held: a page token made by replica a, replayed on replica b for
    another dataset_id or purpose, is refused INVALID_ARGUMENT (it is
    bound to the query), while the same query resumes on b."""
    from test_features import fetch
    a, b = lease_pair(tmp_path, pg, ["ra", "rb"])
    a.start()
    b.start()
    try:
        for i in range(6):
            a.put(f"p{i}", age=str(20 + i), device="mobile",
                  income_band="middle", converted="true")
        first = fetch(a, "training", dataset="pages", batch_size=2,
                      limit_batches=1)
        token = first[0].next_page_token
        assert token
        assert fetch(b, "training", dataset="pages", batch_size=2,
                     page_token=token)
        for kw in ({"dataset": "other"}, {"purpose": "service"}):
            purpose = kw.get("purpose", "training")
            code = code_of(fetch, b, purpose, dataset=kw.get("dataset", "pages"),
                           batch_size=2, page_token=token)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (kw, code)
    finally:
        for d in (a, b):
            assert d.stop() == 0


def test_a_standby_is_refused_with_a_precise_message(tmp_path, pg):
    """Held: postgresql_conninfo pointing at a standby (a pg_basebackup
    copy started in recovery): vaultd refuses to start, saying the server
    is a standby, and writes nothing."""
    from pgserver import PgCopy
    d = pg_daemon(tmp_path, pg, extra="postgresql_connect_timeout_s = 2;")
    d.start()
    d.put("ann", zip="1")
    assert d.stop() == 0
    data = pg.basebackup("standby-" + secrets.token_hex(3))
    (data / "standby.signal").write_text("")
    import shutil
    shutil.chown(data / "standby.signal", "postgres")
    # A standby needs max_connections no lower than its primary's.
    with open(data / "postgresql.auto.conf", "a") as f:
        f.write("max_connections = 200\n")
    copy = PgCopy(data)
    try:
        copy.start()
        assert copy.conninfo
        conf = d.data_dir / "vaultd.conf"
        text = conf.read_text()
        info = re.search(r'postgresql_conninfo = "([^"]*)"', text).group(1)
        new = re.sub(r"port=\d+", f"port={copy.port}", info)
        conf.write_text(text.replace(info, new))
        d.spawn()
        assert d.wait_exit(timeout=60) != 0
        assert "standby" in d.log(), d.log()
    finally:
        copy.stop()


def test_rotations_and_destroys_racing_on_two_replicas(tmp_path, pg):
    """FIXED (failed before the keyring.c fix): two replicas start a rotation at
    the same moment; both pick version 2 and create master-2.key in the
    shared keys directory; the loser's temporary file collides (EEXIST,
    after it wiped the other's "stale" temporary file) and the call fails
    INTERNAL ("internal error; see the server log") instead of joining the
    rotation or a precise FAILED_PRECONDITION.
    Then each destroys the old version at once: the store ends with one active version, every
    consumer readable on both replicas, the old version destroyed and not
    usable on either (a deleted consumer stays gone)."""
    from test_rotation import destroy, rotate, versions
    a, b = lease_pair(tmp_path, pg, ["ra", "rb"])
    a.start()
    b.start()
    try:
        for i in range(60):
            (a if i % 2 else b).put(f"k{i}", zip=f"{i:05d}")
        out = {}

        def run(d, key, fn, *args):
            try:
                out[key] = ("ok", fn(d, *args))
            except grpc.RpcError as e:
                out[key] = (e.code(), e.details())

        ts = [threading.Thread(target=run, args=(d, d.name, rotate))
              for d in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert any(o[0] == "ok" for o in out.values()), out
        for k, o in out.items():
            if o[0] != "ok":
                assert o[0] in (grpc.StatusCode.FAILED_PRECONDITION,
                                grpc.StatusCode.ABORTED,
                                grpc.StatusCode.UNAVAILABLE), out
        va, vb = versions(a), versions(b)
        active = [v for v, s in va.items() if s.state == "active"]
        assert len(active) == 1, va
        time.sleep(1.5)
        assert active == [v for v, s in versions(b).items()
                          if s.state == "active"]
        old = sorted(v for v in va if v != active[0])
        out.clear()
        ts = [threading.Thread(target=run, args=(d, d.name, destroy, v))
              for d in (a, b) for v in old]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        for i in range(60):
            for d in (a, b):
                assert d.get(f"k{i}", ["zip"]) == {"zip": f"{i:05d}"}
        time.sleep(1.5)
        for d in (a, b):
            vs = versions(d)
            for v in old:
                assert vs[v].state == "destroyed", vs
        assert a.stop() == 0 and b.stop() == 0
        a.start()
        b.start()
        assert b.get("k3", ["zip"]) == {"zip": "00003"}
    finally:
        for d in (a, b):
            if d.proc is not None:
                d.stop()
