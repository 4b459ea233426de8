"""mTLS identities, the role policy, the audit log, the right to know."""
import datetime
import json
import shutil
import signal
import subprocess
import time

import grpc
import lmdb
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import health_pb, pb

ROLES = ["writer", "reader", "ml", "privacy", "keyadmin", "auditor"]

# Every method, a harmless request, and the roles the dev policy allows.
METHODS = [
    ("/vault.v1.Consumers/PutAttributes", "unary",
     pb.PutAttributesRequest(consumer_id="m1", attributes=[pb.Attribute(name="age", value="30")]),
     pb.PutAttributesResponse, {"writer"}),
    ("/vault.v1.Consumers/GetAttributes", "unary",
     pb.GetAttributesRequest(consumer_id="m1", purpose="service"),
     pb.GetAttributesResponse, {"reader"}),
    ("/vault.v1.Consumers/SetConsent", "unary",
     pb.SetConsentRequest(consumer_id="m1", purpose="research", granted=True, source="api"),
     pb.SetConsentResponse, {"writer", "privacy"}),
    ("/vault.v1.Consumers/ExportConsumer", "unary",
     pb.ExportConsumerRequest(consumer_id="m1"), pb.ExportConsumerResponse, {"privacy"}),
    ("/vault.v1.Features/FetchFeatures", "stream",
     pb.FetchFeaturesRequest(purpose="training", dataset_id="matrix"),
     pb.FeatureBatch, {"ml"}),
    ("/vault.v1.Features/GetFeatureSpec", "unary",
     pb.GetFeatureSpecRequest(purpose="training"), pb.GetFeatureSpecResponse, {"ml"}),
    ("/vault.v1.Deletion/DeleteConsumer", "unary",
     pb.DeleteConsumerRequest(consumer_id="nobody"), pb.DeletionReceipt, {"privacy"}),
    ("/vault.v1.Deletion/DeleteConsumers", "unary",
     pb.DeleteConsumersRequest(requests=[pb.DeleteConsumerRequest(consumer_id="nobody2")]),
     pb.DeleteConsumersResponse, {"privacy"}),
    ("/vault.v1.Deletion/WatchDeletions", "stream",
     pb.WatchDeletionsRequest(purpose="training"), pb.DeletionEvent, {"ml", "privacy"}),
    ("/vault.v1.Keys/RotateMasterKey", "stream",
     pb.RotateMasterKeyRequest(), pb.RotationProgress, {"keyadmin"}),
    ("/vault.v1.Keys/GetKeyStatus", "unary",
     pb.GetKeyStatusRequest(), pb.GetKeyStatusResponse, {"keyadmin"}),
    ("/vault.v1.Keys/DestroyMasterKey", "unary",
     pb.DestroyMasterKeyRequest(version=99), pb.DestroyMasterKeyResponse, {"keyadmin"}),
    ("/vault.v1.Keys/RotateConsumerKey", "unary",
     pb.RotateConsumerKeyRequest(consumer_id="m1"), pb.RotateConsumerKeyResponse, {"keyadmin"}),
    ("/vault.v1.Audit/QueryAudit", "stream",
     pb.QueryAuditRequest(), pb.AuditEntry, {"auditor"}),
    ("/vault.v1.Audit/VerifyAudit", "unary",
     pb.VerifyAuditRequest(), pb.VerifyAuditResponse, {"auditor"}),
    ("/vault.v1.Deletion/ProcessDropList", "unary",
     pb.ProcessDropListRequest(list_type="Email", items=[pb.DropItem(
         id="A1", hash="PQOfn1RffEKmqMmNAzDKKaoZCwxWbQZkQzPWmQo9REA=")]),
     pb.ProcessDropListResponse, {"privacy"}),
    ("/vault.v1.Audit/AuditReport", "unary",
     pb.AuditReportRequest(), pb.AuditReportResponse, {"auditor"}),
    ("/vault.v1.Features/WatchConsent", "stream",
     pb.WatchConsentRequest(purpose="training"), pb.ConsentRevocation,
     {"ml", "privacy"}),
]


def invoke(ch, method, kind, req, resp_cls, metadata=None, timeout=20):
    ser = lambda m: m.SerializeToString()
    if kind == "unary":
        return ch.unary_unary(method, request_serializer=ser,
                              response_deserializer=resp_cls.FromString)(
            req, timeout=timeout, metadata=metadata)
    return list(ch.unary_stream(method, request_serializer=ser,
                                response_deserializer=resp_cls.FromString)(
        req, timeout=timeout, metadata=metadata))


def code(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def audit(d, **flt):
    with d.tls_channel("auditor") as ch:
        return invoke(ch, "/vault.v1.Audit/QueryAudit", "stream",
                      pb.QueryAuditRequest(**flt), pb.AuditEntry)


def verify_audit(d):
    with d.tls_channel("auditor") as ch:
        return invoke(ch, "/vault.v1.Audit/VerifyAudit", "unary",
                      pb.VerifyAuditRequest(), pb.VerifyAuditResponse)


def make_cert(d, tmp_path, name, ca_key=None, ca_cert=None, expired=False, cn=None):
    """A client certificate for SAN name (CN cn or name), signed by the given CA
    (or a new one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    if ca_key is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
    else:
        ca_name = ca_cert.subject
    now = datetime.datetime.utcnow()
    start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) \
        if expired else (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .sign(ca_key, hashes.SHA256()))
    c, k = tmp_path / f"{name}-{expired}.pem", tmp_path / f"{name}-{expired}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def dev_ca(d):
    t = d.data_dir / "tls"
    ca_cert = x509.load_pem_x509_certificate((t / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((t / "ca.key").read_bytes(), None)
    return ca_key, ca_cert


def test_authorization_matrix_over_mtls(tls_daemon, tmp_path):
    d = tls_daemon
    with d.tls_channel("writer") as ch:
        invoke(ch, *METHODS[0][:4])
    denied = 0
    for role in ROLES:
        with d.tls_channel(role) as ch:
            for method, kind, req, resp, allowed in METHODS:
                got = code(lambda: invoke(ch, method, kind, req, resp))
                if role in allowed:
                    assert got not in (grpc.StatusCode.PERMISSION_DENIED,
                                       grpc.StatusCode.UNAUTHENTICATED,
                                       grpc.StatusCode.UNIMPLEMENTED), (role, method, got)
                else:
                    assert got == grpc.StatusCode.PERMISSION_DENIED, (role, method, got)
                    denied += 1
    # Every denial is in the audit log, with the principal and method.
    entries = audit(d)
    got = [(e.principal, e.method) for e in entries if e.outcome == "denied"]
    assert len(got) == denied
    assert ("ml", "/vault.v1.Consumers/GetAttributes") in got

    # No certificate, another CA, an expired one: the handshake fails.
    no_cert = code(lambda: invoke(d.tls_channel(cert=None, key=None),
                                  *METHODS[10][:4], timeout=5))
    assert no_cert == grpc.StatusCode.UNAVAILABLE
    c, k = make_cert(d, tmp_path, "keyadmin")
    assert code(lambda: invoke(d.tls_channel(cert=c, key=k), *METHODS[10][:4],
                               timeout=5)) == grpc.StatusCode.UNAVAILABLE
    ca_key, ca_cert = dev_ca(d)
    c, k = make_cert(d, tmp_path, "keyadmin", ca_key, ca_cert, expired=True)
    assert code(lambda: invoke(d.tls_channel(cert=c, key=k), *METHODS[10][:4],
                               timeout=5)) == grpc.StatusCode.UNAVAILABLE
    # A valid certificate the policy does not know, with a wrong token.
    c, k = make_cert(d, tmp_path, "stranger", ca_key, ca_cert)
    with d.tls_channel(cert=c, key=k) as ch:
        assert code(lambda: invoke(ch, *METHODS[10][:4])) == \
            grpc.StatusCode.UNAUTHENTICATED
        assert code(lambda: invoke(ch, *METHODS[10][:4], metadata=[
            ("authorization", "Bearer wrong-token-wrong-token")])) == \
            grpc.StatusCode.UNAUTHENTICATED
    # With a SAN, the CN does not count, even when it names a known principal.
    c, k = make_cert(d, tmp_path, "stranger2", ca_key, ca_cert, cn="keyadmin")
    with d.tls_channel(cert=c, key=k) as ch:
        assert code(lambda: invoke(ch, *METHODS[10][:4])) == \
            grpc.StatusCode.UNAUTHENTICATED
    # Anonymous denials: the first of each peer and reason is audited at
    # once, the rest counted into a summary entry (denial.h): two reasons.
    assert len([e for e in audit(d) if e.outcome == "unauthenticated"]) == 2
    # Health needs no principal (but still mTLS).
    with d.tls_channel("ml") as ch:
        assert invoke(ch, "/grpc.health.v1.Health/Check", "unary",
                      health_pb.HealthCheckRequest(), health_pb.HealthCheckResponse).status == 1


def test_vaultctl_over_mtls(tls_daemon):
    r = tls_daemon.ctl("put", "tina", "age=41", role="writer")
    assert r.returncode == 0, r.stderr
    r = tls_daemon.ctl("get", "tina", role="reader")
    assert r.stdout.strip() == "age=41"
    r = tls_daemon.ctl("get", "tina", role="ml")
    assert r.returncode == 5 and "PERMISSION_DENIED" in r.stderr
    r = tls_daemon.ctl("audit", "verify", role="auditor")
    assert r.returncode == 0 and "intact" in r.stdout


def test_audit_records_access_by_ref_only(daemon):
    daemon.put("audit-me@example.test", age="50", email="audit-me@example.test")
    daemon.get("audit-me@example.test", ["age"])
    with pytest.raises(grpc.RpcError):
        daemon.get("audit-me@example.test", purpose="research")
    entries = [e for e in audit_plain(daemon, consumer_id="audit-me@example.test")]
    assert [e.method.split("/")[-1] for e in entries] == \
        ["PutAttributes", "GetAttributes", "GetAttributes"]
    assert entries[1].attribute_names == ["age"] and entries[1].purpose == "service"
    assert entries[2].outcome == "no_consent" and entries[2].purpose == "research"
    assert list(entries[0].attribute_names) == ["age", "email"]
    assert all(len(e.consumer_ref) == 64 for e in entries)
    assert all(e.prev_hash == p.hash for p, e in zip(entries, entries[1:]) if e.seq == p.seq + 1)
    raw = b"".join(e.SerializeToString() for e in audit_plain(daemon))
    assert b"audit-me" not in raw
    v = daemon.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                    pb.VerifyAuditResponse)
    assert v.ok and v.entries >= 3 and v.first_bad_seq == 0
    assert v.checkpoint.startswith(b"vaultd audit checkpoint v1\n")
    import nacl.signing
    from test_deletion import key_status
    nacl.signing.VerifyKey(bytes(key_status(daemon).receipt_public_key)).verify(
        bytes(v.checkpoint), bytes(v.checkpoint_signature))


def audit_plain(d, **flt):
    with d.channel() as ch:
        md = [("authorization", f"Bearer {d.token}")]
        return invoke(ch, "/vault.v1.Audit/QueryAudit", "stream",
                      pb.QueryAuditRequest(**flt), pb.AuditEntry, metadata=md)


def tamper(d, fn):
    """Stops d, applies fn to the audit database, starts d, verifies."""
    assert d.stop() == 0
    env = lmdb.open(str(d.data_dir / "db"), max_dbs=16, subdir=True)
    db = env.open_db(b"audit")
    with env.begin(write=True, db=db) as txn:
        fn(txn)
    env.close()
    # A change after the checkpoint stops the start (test_audit_startup.py);
    # here the daemon serves on, NOT_SERVING, for VerifyAudit to find it.
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + 'audit_broken = "not_serving";\n')
    d.start(ready=(health_pb.HealthCheckResponse.SERVING,
                   health_pb.HealthCheckResponse.NOT_SERVING))
    return d.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                  pb.VerifyAuditResponse)


def key(seq):
    return seq.to_bytes(8, "big")


@pytest.mark.lmdb_only  # tampers with LMDB's file
@pytest.mark.parametrize("how,first_bad", [
    ("change", 4), ("delete", 5), ("reorder", 3), ("insert", None)])
def test_audit_tampering_is_found(daemon, how, first_bad):
    for i in range(8):
        daemon.put(f"t{i}", age=str(20 + i))
    before = daemon.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                         pb.VerifyAuditResponse)
    assert before.ok and before.entries == 8

    def change(txn):
        v = bytearray(txn.get(key(4)))
        v[-3] ^= 0x01
        txn.put(key(4), bytes(v))

    def delete(txn):
        txn.delete(key(5))

    def reorder(txn):
        a, b = txn.get(key(3)), txn.get(key(4))
        txn.put(key(3), b)
        txn.put(key(4), a)

    def insert(txn):
        txn.put(key(9), txn.get(key(8)))

    after = tamper(daemon, {"change": change, "delete": delete,
                            "reorder": reorder, "insert": insert}[how])
    assert not after.ok
    assert after.first_bad_seq == (first_bad or 9)


def test_read_audit_entries_survive_a_crash(daemon):
    """Reads are audited through the journal; a SIGKILL loses none."""
    daemon.put("crash@example.test", age="41")
    for _ in range(30):
        daemon.get("crash@example.test", ["age"])
    daemon.proc.kill()
    assert daemon.wait_exit() == -signal.SIGKILL
    daemon.start()
    entries = list(audit_plain(daemon, consumer_id="crash@example.test"))
    assert [e.method.split("/")[-1] for e in entries] == \
        ["PutAttributes"] + ["GetAttributes"] * 30
    assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 31))
    v = daemon.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                    pb.VerifyAuditResponse)
    assert v.ok and v.first_bad_seq == 0
    # What the crash left was moved in at start, and the files emptied.
    for i in (0, 1):
        assert (daemon.data_dir / "db" / f"audit-journal.{i}").stat().st_size == 0


def test_changed_audit_journal_stops_the_daemon(daemon):
    daemon.put("j@example.test", age="41")
    assert daemon.stop() == 0
    journal = daemon.data_dir / "db" / "audit-journal.0"
    # A well-framed record (format 1, a 14-byte body) whose MAC is wrong.
    body = b"\x00\x00" * 7
    journal.write_bytes(b"\x01\x00\x0e" + (1).to_bytes(8, "big") * 2 + body
                        + b"\x00" * 32)
    daemon.spawn()
    assert daemon.wait_exit() != 0
    log = daemon.log()
    assert f"the audit journal {journal} is damaged at byte 0: a record fails its MAC" in log
    assert "cannot open the audit journal; stopping" in log
    # Moved aside, as the message says, the daemon starts with the log intact.
    journal.rename(journal.with_suffix(".bad"))
    daemon.start()
    v = daemon.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
                    pb.VerifyAuditResponse)
    assert v.ok and v.entries == 1


@pytest.mark.lmdb_only  # reads LMDB's requests database with mdb_dump
def test_export_holds_exactly_this_consumer(daemon):
    daemon.put("exp@example.test", age="33", email="exp@example.test",
               device="mobile", ethnicity="group_b")
    daemon.put("other@example.test", age="44", email="other@example.test")
    daemon.call("/vault.v1.Consumers/SetConsent",
                pb.SetConsentRequest(consumer_id="exp@example.test", purpose="research",
                                     granted=True, source="user"), pb.SetConsentResponse)
    daemon.call("/vault.v1.Consumers/SetConsent",
                pb.SetConsentRequest(consumer_id="exp@example.test", source="gpc"),
                pb.SetConsentResponse)
    daemon.get("exp@example.test", ["age"], purpose="research")
    from test_features import fetch
    fetch(daemon, "training", dataset="exp-ds")
    r = daemon.ctl("export", "exp@example.test")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["attributes"] == {"email": "exp@example.test", "age": "33",
                                 "device": "mobile", "ethnicity": "group_b"}
    assert {(c["purpose"], c["granted"], c["source"]) for c in doc["consents"]} == \
        {("research", True, "user")}
    assert doc["opt_out_sale_share"] is True and doc["limit_sensitive"] is False
    assert doc["datasets"] == ["exp-ds"]
    methods = [a["method"].split("/")[-1] for a in doc["access_history"]]
    # The FetchFeatures call that released the consumer's row is an access too.
    assert methods == ["PutAttributes", "SetConsent", "SetConsent", "GetAttributes",
                       "FetchFeatures"]
    assert doc["access_history"][-1]["dataset_id"] == "exp-ds"
    assert "other@" not in r.stdout and "\"44\"" not in r.stdout
    with pytest.raises(grpc.RpcError) as e:
        daemon.call("/vault.v1.Consumers/ExportConsumer",
                    pb.ExportConsumerRequest(consumer_id="nobody"),
                    pb.ExportConsumerResponse)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # The request is recorded, by ref: a know request and an opt-out (GPC).
    out = subprocess.run(["mdb_dump", "-s", "requests", "-p", str(daemon.data_dir / "db")],
                         capture_output=True, text=True, check=True).stdout
    assert "know:" in out and "optout:" in out and "exp@" not in out


def test_policy_reload_on_sighup(tls_daemon):
    d = tls_daemon
    policy = d.data_dir / "policy.conf"
    good = policy.read_text()
    assert d.ctl("put", "p1", "age=1", role="reader").returncode == 5
    policy.write_text(good.replace('roles = ["reader"]; purposes = ["service"]',
                                   'roles = ["reader", "writer"]; purposes = ["service"]'))
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert d.ctl("put", "p1", "age=1", role="reader").returncode == 0
    # A broken policy is refused, and so is one that lets ml read plaintext.
    for bad in ("principals = ( { name = ", good.replace(
            'ml = ["/vault.v1.Features/FetchFeatures"',
            'ml = ["/vault.v1.Consumers/GetAttributes", "/vault.v1.Features/FetchFeatures"')):
        policy.write_text(bad)
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert d.ctl("put", "p1", "age=2", role="reader").returncode == 0
        assert d.ctl("get", "p1", role="ml").returncode == 5
    assert "policy was not reloaded" in d.log()
    assert "must never call /vault.v1.Consumers/GetAttributes" in d.log()
    r = subprocess.run([__import__("conftest").VAULTD, "--check-config",
                        str(d.data_dir / "vaultd.conf")], capture_output=True, text=True)
    assert r.returncode != 0 and "must never call" in r.stderr


def test_certificates_reload_without_dropping_calls(tls_daemon):
    d = tls_daemon
    t = d.data_dir / "tls"
    ch = d.tls_channel("privacy")
    stream = d.stream(ch, "/grpc.health.v1.Health/Watch",
                      health_pb.HealthCheckRequest(),
                      health_pb.HealthCheckResponse, token=None, timeout=60)
    assert next(stream).status == health_pb.HealthCheckResponse.SERVING
    old = (t / "server.pem").read_bytes()
    subprocess.run(
        f"cd '{t}' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        f"-keyout server.key -out s.csr -subj /CN=localhost 2>/dev/null && "
        f"printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > s.ext && "
        f"openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
        f"-out server.pem -extfile s.ext 2>/dev/null && chmod 600 server.key",
        shell=True, check=True)
    assert (t / "server.pem").read_bytes() != old
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    with d.tls_channel("keyadmin") as fresh_ch:
        invoke(fresh_ch, "/vault.v1.Keys/GetKeyStatus", "unary",
               pb.GetKeyStatusRequest(), pb.GetKeyStatusResponse)
    assert stream.is_active()
    stream.cancel()
    ch.close()
    assert "TLS certificates loaded" in d.log()


def test_bearer_tokens_over_tls_when_certificates_are_optional(tmp_path):
    from conftest import Daemon
    d = Daemon(tmp_path / "vault", tls=True)
    d.start()
    assert d.stop() == 0
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "\ntls_require_client_cert = false;\n")
    d.start()
    try:
        with d.tls_channel(cert=None, key=None) as ch:
            req = pb.PutAttributesRequest(consumer_id="tok", attributes=[
                pb.Attribute(name="age", value="9")])
            invoke(ch, "/vault.v1.Consumers/PutAttributes", "unary", req,
                   pb.PutAttributesResponse,
                   metadata=[("authorization", f"Bearer {d.token}")])
            assert code(lambda: invoke(ch, "/vault.v1.Consumers/PutAttributes",
                                       "unary", req, pb.PutAttributesResponse)) == \
                grpc.StatusCode.UNAUTHENTICATED
        # A client certificate still works, and still decides the principal.
        with d.tls_channel("reader") as ch:
            r = invoke(ch, "/vault.v1.Consumers/GetAttributes", "unary",
                       pb.GetAttributesRequest(consumer_id="tok", purpose="service"),
                       pb.GetAttributesResponse)
            assert [(a.name, a.value) for a in r.attributes] == [("age", "9")]
    finally:
        assert d.stop() == 0
