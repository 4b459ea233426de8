"""The client side of scripts/cluster: vaultd replicas behind nginx.

The replicas run on the PostgreSQL backend (scripts/cluster's default),
one vault through HAProxy's write port; what this checks does not depend on
the backend: the replicas start from scripts/cluster's configs, nginx's grpc_pass serves
every call, and after kill -9 of one replica calls through nginx keep
succeeding with no client retry (nginx passes a call to the next replica
only when it could not send it: connection refused), `status` reports the
dead replica, `up` brings it back, `down` leaves nothing running.

Needs root, scripts/deps' packages, and VAULTD/VAULTCTL (a build):
VAULTD=$PWD/build/vaultd VAULTCTL=$PWD/build/vaultctl /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/cluster/test_cluster_proxy.py
"""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_cluster_pg import CLUSTER, cluster, marked, read_env

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")
VAULTD = os.environ.get("VAULTD")
VAULTCTL = os.environ.get("VAULTCTL")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nginx") is None or not VAULTD
    or not VAULTCTL, reason="needs root, scripts/deps' packages, VAULTD and VAULTCTL")


def ctl(env, *args):
    """vaultctl through nginx with the cluster's token."""
    return subprocess.run(
        [VAULTCTL, "--addr", f"127.0.0.1:{env['NGINX_PORT']}", "--token-file",
         env["VAULT_TOKEN_FILE"], "--timeout", "5000", *args],
        capture_output=True, text=True, timeout=30)


def puts(env, first, n):
    """n PutAttributes through nginx; the failed ones' messages."""
    failed = []
    for i in range(first, first + n):
        r = ctl(env, "put", f"consumer-{i}", f"age={20 + i % 50}", "device=mobile")
        if r.returncode != 0:
            failed.append(r.stderr.strip() or r.stdout.strip())
    return failed


@pytest.fixture
def topology():
    d = tempfile.mkdtemp(prefix="vault-cluster-", dir="/tmp")
    os.chmod(d, 0o711)
    try:
        yield d
    finally:
        subprocess.run([CLUSTER, "down", d], capture_output=True, timeout=90)
        if not marked(d):
            shutil.rmtree(d, ignore_errors=True)


def test_replica_killed_behind_nginx(topology):
    d = topology
    cluster("up", d, "--vaultd", VAULTD, "--replicas", "3", timeout=150)
    env = read_env(d)
    assert env["VAULTD_REPLICAS"] == "3"
    assert ctl(env, "health").stdout.startswith("SERVING")
    assert puts(env, 0, 30) == []
    # nginx balances calls, not connections: every replica served some.
    access = Path(d, "logs", "nginx-access.log").read_text()
    assert access.count("PutAttributes") == 30
    for i in (1, 2, 3):
        assert f"upstream=127.0.0.1:{env[f'VAULTD{i}_PORT']}" in access

    victim = int(Path(d, "run", "vaultd-2.pid").read_text())
    os.kill(victim, signal.SIGKILL)
    failed = puts(env, 30, 30)
    assert failed == [], f"{len(failed)} calls failed behind nginx: {failed[:3]}"

    r = subprocess.run([CLUSTER, "status", d], capture_output=True, text=True,
                       timeout=60)
    print(r.stdout)
    assert r.returncode == 1
    assert any(l.startswith("vaultd-2") and l.endswith("DOWN")
               for l in r.stdout.splitlines())

    out = cluster("up", d, timeout=120)
    assert "starting vaultd-2" in out and "starting vaultd-1" not in out
    cluster("status", d, timeout=60)
    assert puts(env, 60, 10) == []

    cluster("down", d, timeout=90)
    assert marked(d) == []
    # On a sanitizer build (build-san/), each replica's report would be in
    # its log, stopped by down's SIGTERM (vaultd-2's first life ended by -9).
    for i in (1, 2, 3):
        log = Path(d, "logs", f"vaultd-{i}.log").read_text(errors="replace")
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"vaultd-{i}: {log[-3000:]}"
