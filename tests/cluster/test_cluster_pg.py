"""The database tier of scripts/cluster under a leader's death.

Each test brings the topology up in a directory of its own (etcd, two
PostgreSQL 15 nodes under Patroni in synchronous_mode_strict, HAProxy),
writes numbered rows through HAProxy's write port from eight writer threads
that record every commit PostgreSQL acknowledged, kills the leader with -9 and
checks, after the failover, that every acknowledged row is readable through
HAProxy and that writes resumed. The time from the kill to the first
acknowledged write after it is printed (issue 15 asks for it). Finally
`scripts/cluster down` must leave no process of the cluster running.

Needs root (PostgreSQL runs as postgres) and scripts/deps' packages.
Run: /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/cluster/test_cluster_pg.py
(-s shows the times; CLUSTER_FAILOVER_LOG=FILE also appends them to FILE).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = str(ROOT / "scripts" / "cluster")
MARK = "VAULT_CLUSTER_DIR"
NODES = ("pg1", "pg2")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("patroni") is None,
    reason="needs root and scripts/deps' packages (patroni, etcd-server, haproxy)")


def cluster(*args, timeout):
    """scripts/cluster ARGS; its output is shown when it fails."""
    r = subprocess.run([CLUSTER, *args], capture_output=True, text=True,
                       timeout=timeout)
    print(r.stdout, end="")
    assert r.returncode == 0, (
        f"scripts/cluster {' '.join(args)}: exit {r.returncode}\n"
        f"{r.stdout}{r.stderr}")
    return r.stdout


def read_env(d):
    env = {}
    for line in Path(d, "ports.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def wait_until(what, cond, timeout):
    """cond()'s first true value; a failure naming what after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def connect(env, port_key="HAPROXY_WRITE_PORT"):
    """A connection through HAProxy, as vaultd makes it: short connect
    timeout, keepalives that notice a dead peer within seconds, and
    target_session_attrs so that a standby is refused, not used."""
    return psycopg2.connect(
        host="127.0.0.1", port=int(env[port_key]), dbname="vault",
        user="vault", passfile=env["PGPASSFILE"], connect_timeout=2,
        keepalives=1, keepalives_idle=1, keepalives_interval=1,
        keepalives_count=2, target_session_attrs="read-write")


def members(env):
    """{node: (role, state)} from Patroni's REST API of either node."""
    for n in (1, 2):
        url = f"http://127.0.0.1:{env[f'PATRONI{n}_REST_PORT']}/cluster"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                data = json.load(r)
        except OSError:
            continue
        return {m["name"]: (m.get("role"), m.get("state"))
                for m in data.get("members", [])}
    return {}


def write_port_node(env):
    """The node HAProxy's write port leads to now (None: no connection)."""
    try:
        with connect(env) as conn, conn.cursor() as cur:
            cur.execute("SELECT inet_server_port()")
            port = str(cur.fetchone()[0])
        conn.close()
    except psycopg2.Error:
        return None
    return next((n for n in NODES if env[f"PG{n[2:]}_PORT"] == port), None)


def leader(env):
    return next((n for n, (role, state) in members(env).items()
                 if role == "leader" and state == "running"), None)


def processes():
    """{pid: (ppid, environ bytes)} of every process we may read."""
    out = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            env = Path(f"/proc/{p}/environ").read_bytes()
        except OSError:
            continue
        out[int(p)] = (int(stat[stat.rindex(")") + 2:].split()[1]), env)
    return out


def postmaster_pids(d, node):
    """The node's postmaster and its children (backends, walsender...)."""
    pm = int(Path(d, node, "data", "postmaster.pid").read_text().split()[0])
    return {pm} | {p for p, (pp, _) in processes().items() if pp == pm}


def patroni_pids(d, node):
    """The node's Patroni and the runuser above it."""
    top = int(Path(d, "run", f"{node}.pid").read_text())
    return {top} | {p for p, (pp, _) in processes().items() if pp == top}


def kill_leader(env, d, with_patroni):
    """kill -9 the leader's PostgreSQL (and its Patroni): its name and the
    monotonic time of the kill."""
    old = leader(env)
    victims = postmaster_pids(d, old)
    if with_patroni:
        victims |= patroni_pids(d, old)
    t_kill = time.monotonic()
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return old, t_kill


def patroni_log_tail(d, node, lines=25):
    """The last lines Patroni itself wrote to the node's log (PostgreSQL's
    own lines and Python tracebacks left out)."""
    try:
        text = Path(d, "logs", f"{node}.log").read_text(errors="replace")
    except OSError as e:
        return [f"({e})"]
    own = [l for l in text.splitlines()
           if re.match(r"\d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING|ERROR|CRITICAL):", l)]
    return own[-lines:]


def status_ok(d):
    """scripts/cluster status exits 0 (every part up, failover ready); a
    status that hangs counts as not ready."""
    try:
        return subprocess.run([CLUSTER, "status", d], capture_output=True,
                              timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def new_leader(d, env, old, t_kill):
    """The member that took the leader key after old was killed, once
    HAProxy's write port leads to it. A failure shows what the members
    said and what each Patroni logged last (a failover that never came
    once failed a CI run with nothing else to go on)."""
    deadline = time.monotonic() + 60
    while True:
        now = leader(env)
        if now and now != old:
            break
        if time.monotonic() > deadline:
            report = [f"members: {members(env)}"]
            for n in NODES:
                report += [f"--- {n} (Patroni's last lines)"] + \
                    patroni_log_tail(d, n)
            pytest.fail("timed out after 60s waiting for a new leader after"
                        f" {old} was killed\n" + "\n".join(report))
        time.sleep(0.1)
    print(f"new leader {now} after {time.monotonic() - t_kill:.1f}s")
    wait_until("HAProxy's write port on the new leader",
               lambda: write_port_node(env) == now, 30)
    return now


def marked(d):
    """Processes still carrying the cluster's mark for d (down must leave
    none)."""
    mark = f"{MARK}={d}".encode()
    return [p for p, (_, env) in processes().items()
            if mark in env.split(b"\0") and p != os.getpid()]


WRITERS = 8                         # concurrent writers, as in issue 15


class Writer(threading.Thread):
    """Inserts rows first, first + stride, ... one commit each (autocommit)
    through HAProxy's write port, on a connection of its own. An id is
    recorded as acknowledged only once its commit returned: those are the
    rows that must survive the kill. A failed attempt's id is never reused
    (its outcome is unknown)."""

    def __init__(self, env, first, stride):
        super().__init__(daemon=True)
        self.env, self.first, self.stride = env, first, stride
        self.acked = []             # (id, attempt's start, its ack): monotonic
        self.errors = []
        self.warnings = []          # a commit acknowledged with a warning
        self.stop = threading.Event()

    def run(self):
        conn, next_id = None, self.first
        while not self.stop.is_set():
            i, next_id = next_id, next_id + self.stride
            t_start = time.monotonic()
            try:
                if conn is None:
                    conn = connect(self.env)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO acked_writes (id, payload)"
                                " VALUES (%s, %s)", (i, f"row {i}"))
                # A commit whose wait for the sync standby was cancelled
                # returns OK with a WARNING: local only, not acknowledged.
                if any("synchronous replication" in n for n in conn.notices):
                    self.warnings.append(i)
                    del conn.notices[:]
                    continue
                self.acked.append((i, t_start, time.monotonic()))
            except psycopg2.Error as e:
                self.errors.append(str(e).strip().splitlines()[0])
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                time.sleep(0.05)



class Writers:
    """WRITERS writers on disjoint ids, seen as one."""

    def __init__(self, env):
        self.all = [Writer(env, k + 1, WRITERS) for k in range(WRITERS)]
        for w in self.all:
            w.start()

    @property
    def acked(self):
        return [a for w in self.all for a in list(w.acked)]

    @property
    def errors(self):
        return [e for w in self.all for e in list(w.errors)]

    @property
    def warnings(self):
        return [i for w in self.all for i in list(w.warnings)]

    def acks_after(self, t):
        """Writes attempted after t and acknowledged, earliest ack first (a
        commit in flight at t may be acknowledged just after it: it does
        not count)."""
        return sorted((a for a in self.acked if a[1] > t), key=lambda a: a[2])

    def stop(self, timeout):
        for w in self.all:
            w.stop.set()
        deadline = time.monotonic() + timeout
        for w in self.all:
            w.join(max(0.1, deadline - time.monotonic()))
        stuck = [w.first for w in self.all if w.is_alive()]
        assert not stuck, f"writers stuck in a commit: {stuck}"


@pytest.fixture
def topology():
    # Not pytest's tmp_path: its parents are 0700 and PostgreSQL runs as
    # postgres, which must reach the data directories.
    d = tempfile.mkdtemp(prefix="vault-cluster-", dir="/tmp")
    os.chmod(d, 0o711)
    try:
        t0 = time.monotonic()
        cluster("up", d, timeout=150)
        print(f"cluster up in {time.monotonic() - t0:.1f}s")
        env = read_env(d)
        with connect(env) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE acked_writes"
                        " (id bigint PRIMARY KEY, payload text NOT NULL)")
        yield d, env
    finally:
        subprocess.run([CLUSTER, "down", d], capture_output=True, timeout=90)
        left = marked(d)
        if not left:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"kept {d}: processes {left} still running")


def record(case, failover_s, acked):
    """One line per kill in $CLUSTER_FAILOVER_LOG, when set (for reports:
    scripts/bench, issue 15's failover time): case, seconds, acknowledged
    writes, lost (always 0 here: a loss fails the test first)."""
    path = os.environ.get("CLUSTER_FAILOVER_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"leader-{case}-kill failover_s={failover_s:.2f}"
                    f" acked={acked} lost=0\n")


def check_survivors(env, writer):
    """Every acknowledged id is readable through HAProxy's write port."""
    acked = {i for i, _, _ in writer.acked}
    with connect(env) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM acked_writes")
        stored = {r[0] for r in cur.fetchall()}
    lost = sorted(acked - stored)
    assert not lost, f"{len(lost)} acknowledged rows lost: {lost[:20]}"
    assert not writer.warnings, f"commits acknowledged locally only: {writer.warnings}"
    return len(acked), len(stored)


def down_and_check(d, env):
    """down leaves no process and no port of the cluster behind."""
    cluster("down", d, timeout=90)
    assert marked(d) == [], f"processes left after down: {marked(d)}"
    for k, v in env.items():
        if k.endswith("_PORT"):
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex(("127.0.0.1", int(v))) != 0, \
                    f"{k} {v} still accepts connections after down"


def run_kill(d, env, kill_patroni):
    """Writes, kills the leader's node (its PostgreSQL; and its Patroni when
    kill_patroni), waits for writes to resume, checks every acknowledged row.
    Returns (seconds from the kill to the first acknowledged write, old
    leader, new leader)."""
    cluster("status", d, timeout=30)
    writer = Writers(env)
    wait_until("200 acknowledged writes", lambda: len(writer.acked) >= 200, 30)

    assert leader(env) in NODES, members(env)
    acked_at_kill = len(writer.acked)
    old, t_kill = kill_leader(env, d, kill_patroni)

    if kill_patroni:
        # A new leader once the dead one's key expires (ttl 10 s). Strict
        # synchronous mode then accepts no commit until a sync standby is
        # back: `up` restarts the dead node, which rejoins as a replica.
        new = new_leader(d, env, old, t_kill)
        print(f"write port on {new} after {time.monotonic() - t_kill:.1f}s")
        cluster("up", d, timeout=120)
    first = wait_until("a write acknowledged after the kill",
                       lambda: writer.acks_after(t_kill), 90)[0]
    failover_s = first[2] - t_kill
    wait_until("100 more writes", lambda: len(writer.acks_after(t_kill)) >= 100, 30)
    writer.stop(15)

    new = wait_until("a leader", lambda: leader(env), 30)
    acked, stored = check_survivors(env, writer)
    print(f"{'node' if kill_patroni else 'postgres'} of leader {old} killed"
          f" after {acked_at_kill} acknowledged writes; leader now {new};"
          f" {acked} acknowledged, {stored} stored, 0 lost;"
          f" kill -> first acknowledged write: {failover_s:.2f}s;"
          f" errors meanwhile: {len(writer.errors)}"
          f" ({writer.errors[0] if writer.errors else '-'})")
    # Ready again, not only writing: a Patroni that restarted its
    # PostgreSQL names the standby in the sync key a few seconds after the
    # standby streams again (scripts/cluster's patroni_ready).
    wait_until("status to report the topology ready again",
               lambda: status_ok(d), 30)
    cluster("status", d, timeout=30)
    record(f"{'node' if kill_patroni else 'postgres'}", failover_s, acked)
    return failover_s, old, new


def test_leader_node_killed(topology):
    """kill -9 of the leader's Patroni and PostgreSQL (the machine is
    gone): the standby takes over, no acknowledged write is lost."""
    d, env = topology
    failover_s, old, new = run_kill(d, env, kill_patroni=True)
    assert new != old
    print(f"FAILOVER leader node kill: {failover_s:.2f}s")
    down_and_check(d, env)


def test_leader_postgres_killed(topology):
    """kill -9 of the leader's PostgreSQL only: Patroni, which still holds
    the leader key, restarts it (or hands over); writes resume without the
    operator, and no acknowledged write is lost."""
    d, env = topology
    failover_s, _, _ = run_kill(d, env, kill_patroni=False)
    print(f"FAILOVER leader postgres kill: {failover_s:.2f}s")
    down_and_check(d, env)
