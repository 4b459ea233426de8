"""Fixtures for integration tests: a real vaultd on a free loopback port,
driven by vaultctl and by Debian's python3-grpcio (an independent client)."""
import importlib.util
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VAULTD = os.environ.get("VAULTD", str(ROOT / "build" / "vaultd"))
VAULTCTL = os.environ.get("VAULTCTL", str(ROOT / "build" / "vaultctl"))
# The store backend of the tests' vaults: lmdb (the default) or postgresql,
# on one scratch PostgreSQL server for the session (scripts/test runs the
# suite both ways; tests of LMDB's files are marked lmdb_only).
BACKEND = os.environ.get("VAULT_TEST_BACKEND", "lmdb")
_PG = None


def shared_pg():
    global _PG
    if _PG is None:
        from pgserver import PgServer
        _PG = PgServer.scratch().start()
    return _PG


def pytest_sessionfinish(session, exitstatus):
    if _PG is not None:
        _PG.stop()
        _PG.remove()


def pytest_collection_modifyitems(config, items):
    if BACKEND == "lmdb":
        return
    skip = pytest.mark.skip(reason=f"LMDB only (VAULT_TEST_BACKEND={BACKEND})")
    for item in items:
        if "lmdb_only" in item.keywords:
            item.add_marker(skip)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _generate_protos():
    with tempfile.TemporaryDirectory(prefix="vault-pb2-") as out:
        subprocess.run(["protoc", f"--python_out={out}", f"-I{ROOT / 'proto'}",
                        "vault/v1/vault.proto", "grpc/health/v1/health.proto"],
                       check=True)
        # Loaded by path: a "grpc" package on sys.path would shadow grpcio.
        return (_load_module("vault_pb2", f"{out}/vault/v1/vault_pb2.py"),
                _load_module("health_pb2",
                             f"{out}/grpc/health/v1/health_pb2.py"))


pb, health_pb = _generate_protos()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serialize(m):
    return m if isinstance(m, bytes) else m.SerializeToString()


class Daemon:
    """One vaultd --dev process and its data directory."""

    def __init__(self, data_dir, tls=False, extra_conf=None):
        self.tls = tls
        # Lines added to the dev config before the first start (e.g. the
        # PostgreSQL backend's settings): the dev files are made first.
        # With VAULT_TEST_BACKEND=postgresql every vault is on PostgreSQL.
        if extra_conf is None and BACKEND == "postgresql":
            extra_conf = shared_pg().vault_conf()
        self.extra_conf = extra_conf
        self.data_dir = pathlib.Path(data_dir)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.logs = []

    # ---------------------------------------------------------- process
    def prepare_conf(self):
        conf = self.data_dir / "vaultd.conf"
        if self.extra_conf is None or conf.exists():
            return
        # Any command of dev mode writes the dev files, then this one exits.
        subprocess.run([VAULTD, "--dev", "--data-dir", str(self.data_dir),
                        "--hash-token"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
        with open(conf, "a") as f:
            f.write("\n" + self.extra_conf + "\n")

    def spawn(self, *extra, listen=None):
        self.prepare_conf()
        self.log_file = open(self.log_path, "ab")
        args = [VAULTD, "--dev", "--data-dir", str(self.data_dir),
                "--listen", listen or self.addr, *extra]
        if self.tls:
            args.append("--tls")
        self.proc = subprocess.Popen(args, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        return self.proc

    def start(self, *extra, ready=(health_pb.HealthCheckResponse.SERVING,)):
        """Spawns vaultd and waits until its health is one of ready."""
        for attempt in range(3):
            since = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.spawn(*extra)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self.health() in ready:
                        return self
                except (grpc.RpcError, FileNotFoundError):
                    pass
                time.sleep(0.05)
            else:
                raise AssertionError("vaultd did not become healthy:\n"
                                     + self.log())
            rc = self.proc.returncode
            self.proc = None
            self.log_file.close()
            fresh = self.log_path.read_bytes()[since:].decode(errors="replace")
            if attempt == 2 or not self.take_new_ports(fresh):
                raise AssertionError(f"vaultd exited {rc}:\n" + self.log())

    def take_new_ports(self, log):
        """After a start refused because a port the harness picked was taken
        meanwhile by another process (free_port only finds one free at the
        time), picks another; False when the refusal was not about it."""
        if f"cannot listen on {self.addr}" not in log:
            return False
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        return True

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        self.log_file.close()
        self.assert_sanitizer_clean()
        return rc

    def wait_exit(self, timeout=60):
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        self.log_file.close()
        self.assert_sanitizer_clean()
        return rc

    def log(self):
        return self.log_path.read_text(errors="replace") \
            if self.log_path.exists() else ""

    def assert_sanitizer_clean(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            assert mark not in text, text

    # ---------------------------------------------------------- clients
    @property
    def token(self):
        return (self.data_dir / "dev-token").read_text().strip()

    def channel(self, role="privacy", options=None):
        if not self.tls:
            return grpc.insecure_channel(self.addr, options=options)
        return self.tls_channel(role, options=options)

    def tls_channel(self, role=None, cert=None, key=None, ca=None, options=None):
        """A TLS channel to localhost, with role's dev certificate (or the given files)."""
        t = self.data_dir / "tls"
        read = lambda p: open(p, "rb").read() if p else None
        if role is not None:
            cert, key = t / f"{role}.pem", t / f"{role}.key"
        creds = grpc.ssl_channel_credentials(read(ca or t / "ca.pem"), read(key),
                                             read(cert))
        return grpc.secure_channel(f"localhost:{self.port}", creds, options=options)

    def metadata(self, token="dev"):
        """The bearer header for token ("dev": the dev token; None: none)."""
        if token == "dev" and self.tls:
            token = None
        if token == "dev":
            token = self.token
        return [("authorization", f"Bearer {token}")] if token is not None else []

    def call(self, method, req, resp_cls, token="dev", timeout=10,
             channel=None):
        ch = channel or self.channel()
        try:
            fn = ch.unary_unary(method, request_serializer=_serialize,
                                response_deserializer=resp_cls.FromString)
            return fn(req, metadata=self.metadata(token), timeout=timeout)
        finally:
            if channel is None:
                ch.close()

    def stream(self, ch, method, req, resp_cls=None, token="dev", timeout=30):
        """A server-streaming call on ch; resp_cls None yields raw bytes."""
        fn = ch.unary_stream(method, request_serializer=_serialize,
                             response_deserializer=resp_cls and resp_cls.FromString)
        return fn(req, metadata=self.metadata(token), timeout=timeout)

    def health(self, service=""):
        r = self.call("/grpc.health.v1.Health/Check",
                      health_pb.HealthCheckRequest(service=service),
                      health_pb.HealthCheckResponse, token=None, timeout=2)
        return r.status

    # put, get and delete open a connection per call unless given channel:
    # loops of many calls pass one (a connection costs more than the call).
    def put(self, cid, token="dev", channel=None, **attrs):
        req = pb.PutAttributesRequest(consumer_id=cid, attributes=[
            pb.Attribute(name=k, value=v) for k, v in attrs.items()])
        return self.call("/vault.v1.Consumers/PutAttributes", req,
                         pb.PutAttributesResponse, token=token,
                         channel=channel)

    def put_many(self, items):
        """Puts each (consumer id, {name: value}) of items, one at a time on
        one connection, stopping at the first failure; the responses, in
        order. Not from threads: on the ASan build concurrent puts went
        several times slower (6,000 puts: 33 s with 8 threads, 9 s with
        one; on the normal build 2.4 and 6.1 s)."""
        with self.channel() as ch:
            return [self.put(cid, channel=ch, **attrs) for cid, attrs in items]

    def get(self, cid, names=(), purpose="service", token="dev", channel=None,
            timeout=10):
        req = pb.GetAttributesRequest(consumer_id=cid, names=list(names),
                                      purpose=purpose)
        r = self.call("/vault.v1.Consumers/GetAttributes", req,
                      pb.GetAttributesResponse, token=token, channel=channel,
                      timeout=timeout)
        return {a.name: a.value for a in r.attributes}

    def delete(self, cid, request_id="", token="dev", channel=None):
        req = pb.DeleteConsumerRequest(consumer_id=cid, request_id=request_id)
        return self.call("/vault.v1.Deletion/DeleteConsumer", req,
                         pb.DeletionReceipt, token=token, channel=channel)

    def ctl(self, *args, token_file=True, json=False, role=None):
        cmd = [VAULTCTL, "--addr", self.addr]
        if role is not None:
            t = self.data_dir / "tls"
            cmd = [VAULTCTL, "--addr", f"localhost:{self.port}", "--ca", str(t / "ca.pem"),
                   "--cert", str(t / f"{role}.pem"), "--key", str(t / f"{role}.key")]
            token_file = False
        if token_file:
            cmd += ["--token-file", str(self.data_dir / "dev-token")]
        if json:
            cmd.append("--json")
        return subprocess.run(cmd + list(args), capture_output=True,
                              text=True, timeout=60)

    def add_principal(self, name, roles, purposes=()):
        """Adds a principal to the policy (the daemon must be stopped)."""
        token = secrets.token_urlsafe(32)
        out = subprocess.run([VAULTD, "--hash-token", "--dev", "--data-dir",
                              str(self.data_dir)], input=token + "\n",
                             capture_output=True, text=True, check=True)
        h = out.stdout.strip()
        policy = self.data_dir / "policy.conf"
        text = policy.read_text().rstrip()
        assert text.endswith(");")
        quoted = lambda xs: ", ".join(f'"{x}"' for x in xs)
        entry = (f',\n  {{ name = "{name}"; token_hash = "{h}"; '
                 f'roles = [{quoted(roles)}]; purposes = [{quoted(purposes)}]; }}\n);\n')
        policy.write_text(text[:-2].rstrip() + entry)
        return token


def running(d):
    """Starts d for a test; at the end it must stop cleanly."""
    d.start()
    yield d
    if d.proc is not None:
        rc = d.stop()
        assert rc == 0, d.log()


@pytest.fixture
def daemon(tmp_path):
    yield from running(Daemon(tmp_path / "vault"))


@pytest.fixture
def tls_daemon(tmp_path):
    yield from running(Daemon(tmp_path / "vault", tls=True))


@pytest.fixture
def fresh(tmp_path):
    """A daemon object not yet started."""
    d = Daemon(tmp_path / "vault")
    yield d
    if d.proc is not None:
        d.proc.kill()
        d.proc.wait()


def write_canaries(d, n, extra=()):
    """Puts n consumers with random ids and values (plus a random value for
    each attribute named in extra), then updates and deletes the first ten
    (old pages must hold no plaintext either) and reads the rest (their
    audit entries go through the journal). Returns every id and value
    written, the replaced ones too: what a raw scan must not find."""
    written, ids = [], []
    for _ in range(n):
        cid = f"subject-{secrets.token_hex(8)}@example.test"
        email = f"mail-{secrets.token_hex(8)}@example.test"
        zipc = f"Z{secrets.randbelow(10**9):09d}"
        more = {a: f"{a[:3]}-{secrets.token_hex(6)}" for a in extra}
        d.put(cid, email=email, zip=zipc, **more)
        ids.append(cid)
        written += [cid, email, zipc, *more.values()]
    for cid in ids[:10]:
        email = f"new-{secrets.token_hex(8)}@example.test"
        d.put(cid, email=email)
        written.append(email)
        d.delete(cid)
    for cid in ids[10:]:
        d.get(cid, ["zip"])
    return written
