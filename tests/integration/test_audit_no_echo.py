"""A purpose the schema does not have is refused without being echoed
(api/unknown_name.c); the audit log must not keep it either: it is on
disk, in every backup (issue 14, point 7) and read by auditors, and a
client that mixed up its fields may have sent a value there."""
import grpc
import pytest

from conftest import BACKEND, pb, shared_pg

VALUE = "zq-canary-value-5e1d@example.org"


def refused(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown purpose" in e.value.details()
    assert VALUE not in e.value.details()


def test_an_unknown_purpose_is_not_kept_in_the_audit_log(fresh, tmp_path):
    d = fresh.start()
    d.put("someone@example.com", email="someone@example.org")
    refused(lambda: d.get("someone@example.com", purpose=VALUE))
    refused(lambda: d.call("/vault.v1.Consumers/SetConsent",
                           pb.SetConsentRequest(consumer_id="someone@example.com",
                                                purpose=VALUE, granted=True,
                                                source="api"),
                           pb.SetConsentResponse))
    out = d.ctl("audit", "query", json=True)
    assert out.returncode == 0, out.stderr
    assert VALUE not in out.stdout
    assert out.stdout.count('"purpose":"(unknown)"') == 2, out.stdout
    if BACKEND == "lmdb":
        assert d.ctl("backup", "--out", str(tmp_path / "b")).returncode == 0
        assert VALUE.encode() not in (tmp_path / "b").read_bytes()
    assert d.stop() == 0
    for f in d.data_dir.rglob("*"):
        if f.is_file():
            assert VALUE.encode() not in f.read_bytes(), f
    if BACKEND == "postgresql":
        shared_pg().psql("CHECKPOINT")
        for f, data in shared_pg().files():
            assert VALUE.encode() not in data, f
