"""Fixtures: a real vaultd (the integration tests' harness, tests/integration)
with a few hundred synthetic consumers, in plaintext and with mutual TLS.

The package under test is the one installed (scripts/test installs it into
a fresh venv); with VAULTD_PY_INSTALLED=1 a test checks it is not the
source tree."""
import importlib.util
import os
import pathlib
import random
import sys

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _harness():
    path = ROOT / "tests" / "integration"
    sys.path.insert(0, str(path))            # its own imports (pgserver)
    spec = importlib.util.spec_from_file_location("vault_harness",
                                                  path / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


harness = _harness()
Daemon = harness.Daemon
VAULTCTL = harness.VAULTCTL

DEVICES = ["mobile", "desktop", "tablet", "tv", "other"]
BANDS = ["low", "lower_middle", "middle", "upper_middle", "high"]
N_CONSUMERS = 240


def consumers(n=N_CONSUMERS, seed=3):
    """n synthetic consumers: (id, attributes). 'tv' is held by exactly 2
    (fewer than k: streamed as the OTHER token)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        device = "tv" if i < 2 else rng.choice(["mobile", "desktop", "tablet"])
        out.append((f"py-{i:05d}@example.test", {
            "email": f"py-{i:05d}@example.test", "age": str(rng.randint(18, 90)),
            "device": device, "income_band": rng.choice(BANDS),
            "purchases_90d": str(rng.randint(0, 40)),
            "email_opt_in": rng.choice(["true", "false"]),
            "converted": rng.choice(["true", "false"]),
            "zip": f"{rng.randint(10000, 10040):05d}",
            "ethnicity": rng.choice(["a", "b", "c"]),     # an open category
        }))
    return out


def load(client, people):
    for cid, attrs in people:
        client.put(cid, attrs)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A plaintext dev vault (loopback) with N_CONSUMERS consumers."""
    import vaultd
    d = Daemon(tmp_path_factory.mktemp("plain") / "vault")
    d.start()
    with vaultd.Client(d.addr, token_file=d.data_dir / "dev-token",
                       use_env=False) as c:
        load(c, consumers())
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    """A dev vault over TLS; clients present a role's certificate."""
    import vaultd
    d = Daemon(tmp_path_factory.mktemp("mtls") / "vault", tls=True)
    d.start()
    with mtls_client(d, "writer") as c:
        load(c, consumers(60, seed=5))
    yield d
    assert d.stop() == 0, d.log()


def mtls_client(d, role, **kw):
    import vaultd
    t = d.data_dir / "tls"
    return vaultd.Client(f"localhost:{d.port}", ca=t / "ca.pem",
                         cert=t / f"{role}.pem", key=t / f"{role}.key",
                         use_env=False, **kw)


def plain_client(d, **kw):
    import vaultd
    return vaultd.Client(d.addr, token_file=d.data_dir / "dev-token",
                         use_env=False, **kw)


class Dropped(grpc.RpcError):
    """What a call raises when its connection drops: UNAVAILABLE."""

    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection dropped (test)"
