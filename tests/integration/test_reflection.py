"""gRPC server reflection (grpc.reflection.v1alpha and v1): served from the
descriptors protoc wrote at build time, to any authenticated principal by
default, and read by two independent clients: python3-grpcio with the
reflection protocol compiled by protoc, resolving what it gets into a
descriptor pool, and buf curl (from npm) calling real methods with no
.proto file at hand."""
import json
import os
import pathlib
import queue
import subprocess
import tempfile
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import ROOT, VAULTD, _load_module, health_pb, pb

VAULT_SERVICES = ["vault.v1.Consumers", "vault.v1.Features",
                  "vault.v1.Deletion", "vault.v1.Keys", "vault.v1.Audit",
                  "vault.v1.Admin"]
REFLECTION_SERVICES = ["grpc.reflection.v1alpha.ServerReflection",
                       "grpc.reflection.v1.ServerReflection"]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
BUF_VERSION = "1.75.0"


def _reflection_protos():
    with tempfile.TemporaryDirectory(prefix="vault-refl-pb2-") as out:
        subprocess.run(["protoc", f"--python_out={out}", f"-I{ROOT / 'proto'}",
                        "grpc/reflection/v1alpha/reflection.proto",
                        "grpc/reflection/v1/reflection.proto"], check=True)
        return {v: _load_module(f"reflection_{v}_pb2",
                                f"{out}/grpc/reflection/{v}/reflection_pb2.py")
                for v in ("v1alpha", "v1")}


REFL = _reflection_protos()


def _raw(m):
    return m if isinstance(m, bytes) else m.SerializeToString()


class Reflector:
    """One ServerReflectionInfo stream: ask() sends a request and reads its
    answer; the stream stays open until close() half-closes it."""

    def __init__(self, d, version="v1alpha", token="dev", timeout=30):
        self.mod = REFL[version]
        self.ch = d.channel()
        self.q = queue.Queue()
        fn = self.ch.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=_raw,
            response_deserializer=self.mod.ServerReflectionResponse.FromString)
        self.call = fn(iter(self.q.get, None), metadata=d.metadata(token),
                       timeout=timeout)

    def send(self, req=None, **fields):
        self.q.put(req if req is not None else
                   self.mod.ServerReflectionRequest(**fields))

    def ask(self, req=None, **fields):
        self.send(req, **fields)
        return next(self.call)

    def close(self):
        self.q.put(None)
        rest = list(self.call)
        self.ch.close()
        return rest


def services(r):
    resp = r.ask(list_services="")
    assert resp.WhichOneof("message_response") == "list_services_response"
    return [s.name for s in resp.list_services_response.service]


def pool_of(resp):
    """A descriptor pool built from a file_descriptor_response alone."""
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in resp.file_descriptor_response.file_descriptor_proto]
    pool = descriptor_pool.DescriptorPool()
    for f in reversed(files):       # the asked file first, its imports after
        pool.Add(f)
    return pool, files


def message_class(desc):
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def configure(d, **settings):
    d.start()
    assert d.stop() == 0
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "\n" + "".join(
        f"{k} = {v};\n" for k, v in settings.items()))
    d.start()


# ------------------------------------------------------------ the protocol
@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_list_services_names_every_service(daemon, version):
    r = Reflector(daemon, version)
    names = services(r)
    assert sorted(names) == sorted(VAULT_SERVICES + ["grpc.health.v1.Health"]
                                   + REFLECTION_SERVICES)
    assert r.close() == []


def test_symbol_resolves_and_the_schema_calls_the_method(daemon):
    """A method's file, resolved into a pool with nothing else, describes
    the call well enough to make it."""
    r = Reflector(daemon)
    resp = r.ask(file_containing_symbol="vault.v1.Keys.GetKeyStatus")
    assert resp.original_request.file_containing_symbol == \
        "vault.v1.Keys.GetKeyStatus"
    pool, files = pool_of(resp)
    assert files[0].name == "vault/v1/vault.proto"
    method = pool.FindMethodByName("vault.v1.Keys.GetKeyStatus")
    assert method.input_type.full_name == "vault.v1.GetKeyStatusRequest"
    req_cls = message_class(method.input_type)
    resp_cls = message_class(method.output_type)
    status = daemon.call("/vault.v1.Keys/GetKeyStatus", req_cls(), resp_cls)
    assert status.active_version == 1
    # Symbols of every kind find their file.
    for sym, name in [("vault.v1.Deletion", "vault/v1/vault.proto"),
                      ("vault.v1.PutAttributesRequest", "vault/v1/vault.proto"),
                      ("vault.v1.PutAttributesRequest.consumer_id",
                       "vault/v1/vault.proto"),
                      ("grpc.health.v1.HealthCheckResponse.ServingStatus",
                       "grpc/health/v1/health.proto"),
                      ("grpc.reflection.v1.ServerReflection",
                       "grpc/reflection/v1/reflection.proto")]:
        got = r.ask(file_containing_symbol=sym)
        assert pool_of(got)[1][0].name == name, sym
    got = r.ask(file_by_filename="grpc/health/v1/health.proto")
    pool, _ = pool_of(got)
    assert [m.name for m in pool.FindServiceByName(
        "grpc.health.v1.Health").methods] == ["Check", "Watch"]
    assert r.close() == []


def test_what_is_not_there_is_not_found_in_the_stream(daemon):
    """Unknown names get an error_response (the protocol's way); the stream
    goes on answering."""
    r = Reflector(daemon, "v1")
    for fields in [dict(file_containing_symbol="vault.v1.NoSuchThing"),
                   dict(file_containing_symbol="vault.v1"),
                   dict(file_by_filename="vault/v1/secret.proto"),
                   dict(file_containing_extension=r.mod.ExtensionRequest(
                       containing_type="vault.v1.PutAttributesRequest",
                       extension_number=100)),
                   dict(all_extension_numbers_of_type="vault.v1.Nope"),
                   dict(all_extension_numbers_of_type="vault.v1.Keys")]:
        resp = r.ask(**fields)
        assert resp.WhichOneof("message_response") == "error_response", fields
        assert resp.error_response.error_code == NOT_FOUND
        assert "NoSuchThing" not in resp.error_response.error_message
    resp = r.ask(all_extension_numbers_of_type="vault.v1.PutAttributesRequest")
    ext = resp.all_extension_numbers_response
    assert ext.base_type_name == "vault.v1.PutAttributesRequest"
    assert list(ext.extension_number) == []
    resp = r.ask(host="x")          # asks nothing
    assert resp.error_response.error_code == INVALID_ARGUMENT
    assert "vault.v1.Keys" in services(r)
    assert r.close() == []


def test_a_stream_closed_at_once_ends_ok(daemon):
    r = Reflector(daemon)
    assert r.close() == []
    assert r.call.code() == grpc.StatusCode.OK


# ------------------------------------------------------------ who may ask
def test_anonymous_refused_any_principal_allowed(fresh):
    """reflection = "authenticated" (the default): no credentials, no
    answer; a principal of any role may ask, and gains nothing else."""
    fresh.start()
    assert fresh.stop() == 0
    token = fresh.add_principal("compliance", ["auditor"])
    fresh.start()
    r = Reflector(fresh, token=None)
    with pytest.raises(grpc.RpcError) as e:
        r.ask(list_services="")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    r = Reflector(fresh, token="wrong-token")
    with pytest.raises(grpc.RpcError) as e:
        r.ask(list_services="")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    r = Reflector(fresh, "v1", token=token)
    assert "vault.v1.Keys" in services(r)
    assert r.close() == []
    with pytest.raises(grpc.RpcError) as e:
        fresh.call("/vault.v1.Keys/GetKeyStatus", pb.GetKeyStatusRequest(),
                   pb.GetKeyStatusResponse, token=token)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The health protocol knows the service.
    assert fresh.health("grpc.reflection.v1.ServerReflection") == \
        health_pb.HealthCheckResponse.SERVING
    assert fresh.stop() == 0


def test_client_certificate_principal_may_reflect(tls_daemon):
    """Over mTLS the certificate is the credential, for reflection too;
    buf curl with the same certificate calls a method it learnt that way."""
    r = Reflector(tls_daemon, "v1", token=None)     # the privacy role's cert
    assert "vault.v1.Deletion" in services(r)
    assert r.close() == []
    t = tls_daemon.data_dir / "tls"
    out = subprocess.run(
        [buf_binary(), "curl", "--protocol", "grpc", "--cacert",
         str(t / "ca.pem"), "--cert", str(t / "keyadmin.pem"), "--key",
         str(t / "keyadmin.key"), "-d", "{}",
         f"https://localhost:{tls_daemon.port}/vault.v1.Keys/GetKeyStatus"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["activeVersion"] == 1


def test_public_serves_anonymous_callers(fresh):
    configure(fresh, reflection='"public"')
    r = Reflector(fresh, token=None)
    assert "vault.v1.Consumers" in services(r)
    assert r.close() == []
    assert fresh.stop() == 0


def test_off_serves_nothing(fresh):
    configure(fresh, reflection='"off"')
    for version in ("v1alpha", "v1"):
        r = Reflector(fresh, version)
        with pytest.raises(grpc.RpcError) as e:
            r.ask(list_services="")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as e:
        fresh.health("grpc.reflection.v1alpha.ServerReflection")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert fresh.stop() == 0


def test_unknown_setting_value_refused(fresh):
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + '\nreflection = "everyone";\n')
    out = subprocess.run([VAULTD, "--check-config", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "reflection" in out.stderr


def reflection_entries(d):
    with d.channel() as ch:
        fn = ch.unary_stream("/vault.v1.Audit/QueryAudit",
                             request_serializer=_raw,
                             response_deserializer=pb.AuditEntry.FromString)
        return [e for e in fn(pb.QueryAuditRequest(), metadata=d.metadata(),
                              timeout=30) if "ServerReflection" in e.method]


def test_answers_are_not_audited_refusals_are(daemon):
    """Reflection touches no personal data: answered streams leave no
    audit entry; a principal's malformed request is audited as refused,
    with nothing of the request in it."""
    r = Reflector(daemon)
    services(r)
    r.ask(file_containing_symbol="vault.v1.Keys")
    assert r.close() == []
    assert reflection_entries(daemon) == []
    expect_refused(daemon, grpc.StatusCode.INVALID_ARGUMENT,
                   b"\x22\x06secret\xff")
    entries = reflection_entries(daemon)
    assert [(e.principal, e.outcome) for e in entries] == [("dev", "invalid")]
    assert b"secret" not in entries[0].SerializeToString()


# ------------------------------------------------------------ hostile input
def expect_refused(d, code, *messages):
    """Sends messages on one stream; the call ends with code."""
    r = Reflector(d)
    for m in messages:
        r.send(m)
    with pytest.raises(grpc.RpcError) as e:
        list(r.call)
    r.q.put(None)
    r.ch.close()
    assert e.value.code() == code, e.value.details()
    return e.value.details()


def test_bad_requests_get_a_precise_status(daemon):
    good = REFL["v1alpha"].ServerReflectionRequest(list_services="")
    # Not a message at all: first, and after a good one.
    details = expect_refused(daemon, grpc.StatusCode.INVALID_ARGUMENT,
                             b"\x0a\xff\xff")
    assert "not a valid grpc.reflection.v1alpha.ServerReflectionRequest" \
        in details
    expect_refused(daemon, grpc.StatusCode.INVALID_ARGUMENT, good,
                   b"\x22\x05ab")
    # A string over its limit, and one that is not UTF-8 (field 4, 2 bytes).
    long_symbol = REFL["v1alpha"].ServerReflectionRequest(
        file_containing_symbol="a" * 300)
    details = expect_refused(daemon, grpc.StatusCode.INVALID_ARGUMENT, good,
                             long_symbol)
    assert "file_containing_symbol" in details and "aaaa" not in details
    details = expect_refused(daemon, grpc.StatusCode.INVALID_ARGUMENT,
                             b"\x22\x02\xff\xfe")
    assert "file_containing_symbol" in details
    # Over max_request_bytes (1 MiB by default): first, and mid-stream.
    big = b"\x3a\x80\x80\x80\x01" + b"x" * (2 << 20)
    expect_refused(daemon, grpc.StatusCode.RESOURCE_EXHAUSTED, big)
    expect_refused(daemon, grpc.StatusCode.RESOURCE_EXHAUSTED, good, big)
    assert daemon.health() == health_pb.HealthCheckResponse.SERVING
    r = Reflector(daemon)
    assert "vault.v1.Keys" in services(r)
    assert r.close() == []


def test_open_streams_hold_no_worker_and_are_capped(fresh):
    """One worker, streams that never half-close: unary calls and health
    are still served, because a stream runs on its own thread; and the
    streams count against the principal's cap."""
    configure(fresh, workers=1, max_streams_per_principal=3)
    open_streams = [Reflector(fresh) for _ in range(3)]
    for r in open_streams:
        assert "vault.v1.Keys" in services(r)
    status = fresh.call("/vault.v1.Keys/GetKeyStatus", pb.GetKeyStatusRequest(),
                        pb.GetKeyStatusResponse)
    assert status.active_version == 1
    assert fresh.health() == health_pb.HealthCheckResponse.SERVING
    extra = Reflector(fresh)
    with pytest.raises(grpc.RpcError) as e:
        extra.ask(list_services="")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams_per_principal" in e.value.details()
    extra.q.put(None)
    extra.ch.close()
    for r in open_streams:      # still answering after all that
        assert "vault.v1.Keys" in services(r)
        assert r.close() == []
    assert fresh.stop() == 0


def test_stop_ends_idle_streams_at_once(fresh):
    """A stream waiting for its client's next request does not hold the
    shutdown: with a grace period of ten minutes, the stop still completes
    (d.stop gives up after 60 s) and the stream reads UNAVAILABLE."""
    configure(fresh, shutdown_grace_ms=600000)
    r = Reflector(fresh)
    assert "vault.v1.Keys" in services(r)
    assert fresh.stop(timeout=60) == 0
    with pytest.raises(grpc.RpcError) as e:
        next(r.call)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    r.q.put(None)
    r.ch.close()


def test_silent_client_loses_its_stream(fresh):
    """No request for reflection_idle_s (30 s by default, 2 s here): the
    stream is ended with DEADLINE_EXCEEDED (the slot and the thread it held
    are given back), and a stream that keeps asking is not."""
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "reflection_idle_s = 2;\n")
    daemon = fresh.start()
    busy = Reflector(daemon, timeout=120)
    r = Reflector(daemon, timeout=120)
    assert "vault.v1.Keys" in services(r)
    for _ in range(4):      # 4 s of requests a second apart
        time.sleep(1)
        assert "vault.v1.Keys" in services(busy)
    assert busy.close() == []   # right after its last request
    with pytest.raises(grpc.RpcError) as e:
        next(r.call)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no request on this stream for 2000 ms" in e.value.details()
    r.q.put(None)
    r.ch.close()
    r = Reflector(daemon)
    assert "vault.v1.Keys" in services(r)
    assert r.close() == []
    assert daemon.stop() == 0


# ------------------------------------------------------------ buf curl
def buf_binary():
    """buf from npm, installed once into a cache directory."""
    cache = pathlib.Path(os.environ.get(
        "VAULT_TEST_CACHE", pathlib.Path.home() / ".cache" / "vaultd-tests"))
    prefix = cache / f"buf-{BUF_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "buf"
    if not binary.exists():
        if subprocess.run(["sh", "-c", "command -v npm"],
                          capture_output=True).returncode != 0:
            pytest.skip("npm is not installed (scripts/deps installs it)")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                        "--prefix", str(prefix), f"@bufbuild/buf@{BUF_VERSION}"],
                       check=True, capture_output=True, timeout=600)
    return str(binary)


def buf_curl(d, *args, token=None):
    auth = f"authorization: Bearer {token or d.token}"
    return subprocess.run(
        [buf_binary(), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
         "--reflect-header", auth, "-H", auth, *args],
        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_buf_curl_needs_no_proto_files(daemon, protocol):
    base = f"http://{daemon.addr}"
    out = buf_curl(daemon, "--reflect-protocol", protocol, "--list-services",
                   base)
    assert out.returncode == 0, out.stderr
    assert set(VAULT_SERVICES + ["grpc.health.v1.Health"]) <= \
        set(out.stdout.split())
    out = buf_curl(daemon, "--reflect-protocol", protocol, "--list-methods",
                   base)
    assert "vault.v1.Keys/GetKeyStatus" in out.stdout.split(), out.stderr
    out = buf_curl(daemon, "--reflect-protocol", protocol, "-d", "{}",
                   f"{base}/vault.v1.Keys/GetKeyStatus")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["activeVersion"] == 1
    daemon.put("buf-1", email="a@example.com")
    out = buf_curl(daemon, "--reflect-protocol", protocol, "-d",
                   json.dumps({"consumerId": "buf-1", "names": ["email"],
                               "purpose": "service"}),
                   f"{base}/vault.v1.Consumers/GetAttributes")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["attributes"][0]["value"] == "a@example.com"
    out = buf_curl(daemon, "--reflect-protocol", protocol, "-d", "{}",
                   f"{base}/grpc.health.v1.Health/Check")
    assert json.loads(out.stdout)["status"] == "SERVING", out.stderr


def test_buf_curl_without_credentials_is_refused(daemon):
    out = subprocess.run(
        [buf_binary(), "curl", "-v", "--protocol", "grpc",
         "--http2-prior-knowledge", "--list-services", f"http://{daemon.addr}"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    # buf -v shows the trailers; it words UNAUTHENTICATED as a BSR login hint.
    assert "Grpc-Status: 16" in out.stderr, out.stderr
    assert "missing credentials" in out.stderr
