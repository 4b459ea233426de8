"""Request strings are checked in one place before any handler runs: a NUL,
invalid UTF-8 or an over-long string in any field of any method is refused
with INVALID_ARGUMENT naming the field, and nothing a refused call leaves in
the audit log breaks a strict client (python3-grpcio) reading it back."""
import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from conftest import pb
from test_security import METHODS, code, invoke

NUL_MARK, BAD_MARK = "zq\x00q", "zq\x01q"   # same length: swapped in the bytes


def _string_paths(desc, prefix=""):
    """Every string field reachable in desc, as dotted paths."""
    for f in desc.fields:
        path = prefix + f.name
        if f.type == FieldDescriptor.TYPE_STRING:
            yield path
        elif f.type == FieldDescriptor.TYPE_MESSAGE and prefix.count(".") < 2:
            yield from _string_paths(f.message_type, path + ".")


def _with_value(req, path, value):
    """A copy of req whose field at path holds value (one element if repeated)."""
    m = type(req)()
    m.CopyFrom(req)
    *parents, leaf = path.split(".")
    cur = m
    for p in parents:
        f = cur.DESCRIPTOR.fields_by_name[p]
        if f.label == FieldDescriptor.LABEL_REPEATED:
            cur = getattr(cur, p)[0] if len(getattr(cur, p)) else getattr(cur, p).add()
        else:
            cur = getattr(cur, p)
    f = cur.DESCRIPTOR.fields_by_name[leaf]
    if f.label == FieldDescriptor.LABEL_REPEATED:
        getattr(cur, leaf).append(value)
    else:
        setattr(cur, leaf, value)
    return m


def _raw(req, bad_utf8):
    b = req.SerializeToString()
    if bad_utf8:
        assert b.count(b"zq\x01q") == 1
        b = b.replace(b"zq\x01q", b"zq\xffq")
    return b


CASES = [(m, kind, req, resp, path, bad)
         for (m, kind, req, resp, _) in METHODS
         for path in _string_paths(req.DESCRIPTOR)
         for bad in (False, True)]


def test_every_string_field_of_every_method_is_checked(daemon):
    """Regression for issue 11.1: strings were cut at an embedded NUL."""
    seen = 0
    with daemon.channel() as ch:
        for method, kind, req, resp, path, bad in CASES:
            raw = _raw(_with_value(req, path, BAD_MARK if bad else NUL_MARK), bad)
            ser = lambda b: b
            try:
                if kind == "unary":
                    ch.unary_unary(method, request_serializer=ser)(
                        raw, metadata=daemon.metadata(), timeout=10)
                else:
                    list(ch.unary_stream(method, request_serializer=ser)(
                        raw, metadata=daemon.metadata(), timeout=10))
                pytest.fail(f"{method} {path} accepted")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, path, e)
                leaf = path.split(".")[-1]
                assert leaf in e.details(), (method, path, e.details())
                assert "zq" not in e.details()
            seen += 1
    assert seen >= 40


def test_nul_does_not_reach_another_consumer(daemon):
    daemon.put("c-nul", zip="11111")
    for cid, attrs in [("c-nul\x00x", {"zip": "22222"}),
                       ("c-nul", {"email": "abc\x00def"}),
                       ("c-nul", {"device": "mobile\x00xyz"}),
                       ("c-nul", {"age": "30\x00999"})]:
        with pytest.raises(grpc.RpcError) as e:
            daemon.put(cid, **attrs)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert daemon.get("c-nul") == {"zip": "11111"}
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("c-nul", purpose="service\x00anything")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "purpose" in e.value.details()
    # Request ids: "R\0a" and "R\0b" were one id.
    for cid, rid in [("a-nul", "R\x00a"), ("b-nul", "R\x00b")]:
        with pytest.raises(grpc.RpcError) as e:
            daemon.delete(cid, request_id=rid)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request_id" in e.value.details()


def test_refused_invalid_utf8_leaves_the_audit_log_readable(daemon):
    """Regression for issue 11.2: one refused call made the export unreadable."""
    daemon.put("victim", zip="94105")
    bad = [
        ("/vault.v1.Consumers/GetAttributes",
         pb.GetAttributesRequest(consumer_id="victim", purpose=BAD_MARK)),
        ("/vault.v1.Consumers/SetConsent",
         pb.SetConsentRequest(consumer_id="victim", purpose="research",
                              granted=True, source=BAD_MARK)),
    ]
    with daemon.channel() as ch:
        for method, req in bad:
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary(method, request_serializer=lambda b: b)(
                    _raw(req, True), metadata=daemon.metadata(), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as e:
            list(ch.unary_stream("/vault.v1.Features/FetchFeatures",
                                 request_serializer=lambda b: b)(
                _raw(pb.FetchFeaturesRequest(purpose="training",
                                             dataset_id=BAD_MARK), True),
                metadata=daemon.metadata(), timeout=10))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Strict decoding of everything read back.
        x = invoke(ch, "/vault.v1.Consumers/ExportConsumer", "unary",
                   pb.ExportConsumerRequest(consumer_id="victim"),
                   pb.ExportConsumerResponse, metadata=daemon.metadata())
        assert x.attributes
        entries = invoke(ch, "/vault.v1.Audit/QueryAudit", "stream",
                         pb.QueryAuditRequest(), pb.AuditEntry,
                         metadata=daemon.metadata())
    outcomes = [e.outcome for e in entries if e.method.endswith(
        ("GetAttributes", "SetConsent", "FetchFeatures"))]
    assert outcomes.count("invalid") == 3, outcomes
    r = daemon.ctl("export", "victim")
    assert r.returncode == 0 and r.stdout.strip(), r
