"""Every RPC of vault.v1 through the package, over plaintext and mTLS, and
its errors, environment variables and retries."""
import os
import pathlib
import threading
import time

import grpc
import pytest

import vaultd
from conftest import (Daemon, Dropped, consumers, load, mtls_client,
                      plain_client)


def test_the_installed_package_is_tested():
    if os.environ.get("VAULTD_PY_INSTALLED") != "1":
        pytest.skip("VAULTD_PY_INSTALLED=1 (scripts/test) checks the install")
    src = pathlib.Path(__file__).resolve().parents[1]
    assert src not in pathlib.Path(vaultd.__file__).resolve().parents
    from vaultd._pb import vault_pb2, vault_pb2_grpc   # generated at build time
    assert vault_pb2.FetchFeaturesRequest(shard_count=2).shard_count == 2
    assert hasattr(vault_pb2_grpc, "FeaturesStub")


def test_every_rpc_in_plaintext(plain):
    with plain_client(plain) as c:
        tour(c, c, c, c, c, c)


def test_every_rpc_over_mtls(mtls):
    roles = ("writer", "reader", "ml", "privacy", "keyadmin", "auditor")
    clients = [mtls_client(mtls, r) for r in roles]
    try:
        tour(*clients)
    finally:
        for c in clients:
            c.close()


def tour(writer, reader, ml, privacy, keyadmin, auditor):
    r = writer.put("tour@example.test", {"age": "33", "device": "tv",
                                         "email": "tour@example.test"})
    assert r.created and r.written == 3 and len(r.consumer_ref) == 64
    got = reader.get("tour@example.test", "service")
    assert got.values == {"age": "33", "device": "tv", "email": "tour@example.test"}
    assert got.consumer_ref == r.consumer_ref and got.updated_at_ms["age"] > 0
    assert reader.get("tour@example.test", "service", names=["age"]).values == {"age": "33"}
    st = privacy.set_consent("tour@example.test", limit_sensitive=True)
    assert st.limit_sensitive and not st.opt_out_sale_share and not st.created
    # Consent before data: an unknown consumer is created, with the opt-out.
    st = privacy.set_consent("early@example.test", source="gpc")
    assert st.created and st.opt_out_sale_share
    st = privacy.set_consent("tour@example.test", source="gpc",
                             opt_out_sale_share=True)
    assert st.opt_out_sale_share and st.limit_sensitive
    st = privacy.set_consent("tour@example.test", opt_out_admt=True)
    assert st.opt_out_admt and st.opt_out_sale_share
    privacy.set_consent("tour@example.test", "research", granted=True, source="user")
    exp = privacy.export("tour@example.test")
    assert {a.name for a in exp.attributes} == {"age", "device", "email"}
    assert any(c.purpose == "research" and c.granted for c in exp.consents)
    assert exp.opt_out_sale_share and exp.opt_out_admt
    spec = ml.feature_spec("training")
    assert spec.attributes["device"].kind == "category"
    rows = ml.features("training", "tour-ds", ["age", "device"]).to_pandas()
    assert len(rows) >= 1 and list(rows.columns) == ["pseudonym", "age", "device"]
    rk = keyadmin.rotate_consumer_key("tour@example.test")
    assert rk.dek_generation >= 1
    before = keyadmin.key_status()
    progress = list(keyadmin.rotate_master_key())
    assert progress[-1].done and progress[-1].new_version == before.active_version + 1
    after = keyadmin.key_status()
    assert after.active_version == before.active_version + 1
    old = next(v for v in after.versions if v.version == before.active_version)
    assert old.state == "decrypt-only"
    receipt = privacy.delete("tour@example.test")
    assert receipt.found and receipt.consumer_ref == r.consumer_ref
    vaultd.verify_receipt(receipt, keyadmin.key_status().receipt_public_key)
    events = list(ml.watch_deletions("tour-ds", follow=False))
    assert len(events) == 1 and events[0].pseudonym in set(rows["pseudonym"])
    destroyed = keyadmin.destroy_master_key(before.active_version)
    assert destroyed.version == before.active_version
    entries = list(auditor.query_audit(method="/vault.v1.Keys/DestroyMasterKey"))
    assert entries and entries[-1].outcome == "ok"
    v = auditor.verify_audit()
    assert v.ok and v.entries > 0
    with pytest.raises(vaultd.NotFound):
        reader.get("tour@example.test", "service")


def test_errors_are_typed_and_carry_no_value(plain):
    with plain_client(plain) as c:
        with pytest.raises(vaultd.InvalidArgument) as e:
            c.put("err@example.test", {"shoe_size": "44"})
        assert "attributes[0].name: unknown attribute" in e.value.message
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.method == "/vault.v1.Consumers/PutAttributes"
        # A value the vault reads and refuses is named, never echoed.
        with pytest.raises(vaultd.InvalidArgument) as e:
            c.put("err@example.test", {"age": "secret-value-42"})
        assert "attributes[0]" in e.value.message
        assert "secret-value-42" not in str(e.value)
        with pytest.raises(vaultd.NotFound) as e:
            c.get("nobody-here@example.test", "service")
        assert "nobody-here" not in str(e.value)
        with pytest.raises(vaultd.InvalidArgument):
            c.features("no-such-purpose", "ds", ["age"]).to_numpy()
    with vaultd.Client(plain.addr, use_env=False) as anon:
        with pytest.raises(vaultd.Unauthenticated):
            anon.get("x@example.test", "service")
    with pytest.raises(ValueError) as e:
        vaultd.Client(plain.addr, token="secret token", use_env=False)
    assert "secret" not in str(e.value)
    with vaultd.Client(plain.addr, token="not-a-token", use_env=False) as bad:
        with pytest.raises(vaultd.VaultError) as e:
            bad.get("x@example.test", "service")
        assert "not-a-token" not in str(e.value)


def test_wrong_role_is_permission_denied(mtls):
    with mtls_client(mtls, "reader") as c:
        with pytest.raises(vaultd.PermissionDenied):
            c.delete("py-00001@example.test")
        with pytest.raises(vaultd.PermissionDenied):     # purposes: service only
            c.get("py-00001@example.test", "training")


def test_environment_variables_as_vaultctl(plain, mtls, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", plain.addr)
    monkeypatch.setenv("VAULT_TOKEN_FILE", str(plain.data_dir / "dev-token"))
    for v in ("VAULT_CA", "VAULT_CERT", "VAULT_KEY"):
        monkeypatch.delenv(v, raising=False)
    with vaultd.Client() as c:
        assert c.get("py-00003@example.test", "service").values
        assert "dev-token" not in repr(c) and plain.token not in repr(c)
    t = mtls.data_dir / "tls"
    monkeypatch.setenv("VAULT_ADDR", f"localhost:{mtls.port}")
    monkeypatch.delenv("VAULT_TOKEN_FILE")
    monkeypatch.setenv("VAULT_CA", str(t / "ca.pem"))
    monkeypatch.setenv("VAULT_CERT", str(t / "reader.pem"))
    monkeypatch.setenv("VAULT_KEY", str(t / "reader.key"))
    with vaultd.Client() as c:
        assert c.get("py-00003@example.test", "service").values
    monkeypatch.delenv("VAULT_KEY")
    with pytest.raises(ValueError, match="cert and key"):
        vaultd.Client()


def test_reads_retry_until_the_vault_is_up(tmp_path):
    d = Daemon(tmp_path / "vault")
    d.start()
    with plain_client(d) as c:
        c.put("retry@example.test", {"age": "40"})
    assert d.stop() == 0
    # The vault is down; it comes back while the client backs off.
    threading.Timer(0.3, d.start).start()
    # 12 attempts back off for 6.6 s at the least: room for a slow start
    # under load, and for gRPC's own reconnect backoff.
    with plain_client(d, retries=12, timeout=5) as c:
        assert c.get("retry@example.test", "service").values == {"age": "40"}
    assert d.stop() == 0
    with plain_client(d, retries=1, timeout=2) as c:
        t0 = time.monotonic()
        with pytest.raises(vaultd.Unavailable):
            c.get("retry@example.test", "service")
        assert time.monotonic() - t0 < 30      # bounded, not forever


class LoseFirstAnswer:
    """Wraps a stub method: the first call reaches the vault, but its answer
    is lost (UNAVAILABLE), as when a connection drops after the commit."""

    def __init__(self, fn):
        self.fn, self.calls, self.requests = fn, 0, []

    def __call__(self, req, **kw):
        self.calls += 1
        self.requests.append(req)
        answer = self.fn(req, **kw)
        if self.calls == 1:
            raise Dropped()
        return answer


def test_delete_many_retries_with_the_same_request_ids(plain):
    ids = [cid for cid, _ in consumers()[200:230]]
    with plain_client(plain) as c:
        lossy = LoseFirstAnswer(c.deletion.DeleteConsumers)
        c.deletion.DeleteConsumers = lossy
        receipts = c.delete_many(ids + [(ids[0], "explicit-id-1")], batch_size=7)
    # The batch whose answer was lost went again with the same ids: the
    # vault answered it from its ledger (found), not as a new deletion of
    # consumers already gone (which would say found = false).
    assert lossy.calls == 6      # 5 batches of 31 items, one twice
    assert [q.request_id for q in lossy.requests[0].requests] == \
        [q.request_id for q in lossy.requests[1].requests]
    assert [r.found for r in receipts[:-1]] == [True] * len(ids)
    assert receipts[-1].request_id == "explicit-id-1" and not receipts[-1].found
    refs = [r.consumer_ref for r in receipts]
    assert refs[0] == refs[-1] and len(set(refs[:-1])) == len(ids)


def test_a_tampered_receipt_does_not_verify(plain):
    import dataclasses
    with plain_client(plain) as c:
        cid = consumers()[231][0]
        r = c.delete(cid)
        key = c.receipt_public_key()
        vaultd.verify_receipt(r, key)
        with pytest.raises(vaultd.ReceiptInvalid, match="found"):
            vaultd.verify_receipt(dataclasses.replace(r, found=not r.found), key)
        with pytest.raises(vaultd.ReceiptInvalid, match="signature"):
            vaultd.verify_receipt(dataclasses.replace(
                r, signed_bytes=r.signed_bytes.replace(b"true", b"fals")), key)
        with pytest.raises(vaultd.ReceiptInvalid):
            vaultd.verify_receipt(r, bytes(32))
        again = c.delete(cid, request_id=r.request_id)
        assert again.signed_bytes == r.signed_bytes      # idempotent


def test_load_then_delete_everything_in_order(tmp_path):
    d = Daemon(tmp_path / "vault")
    d.start()
    people = consumers(50, seed=9)
    with plain_client(d) as c:
        load(c, people)
        ids = [cid for cid, _ in people]
        receipts = c.delete_many(reversed(ids), batch_size=16)
        refs = [c.put(cid, {"age": "1"}).consumer_ref for cid in reversed(ids)]
    assert [r.consumer_ref for r in receipts] == refs
    assert all(r.found for r in receipts)
    assert d.stop() == 0


def test_a_privacy_principal_deletes_with_a_pinned_receipt_key(mtls):
    with mtls_client(mtls, "keyadmin") as k:
        key = k.receipt_public_key()
    ids = [cid for cid, _ in consumers(60, seed=5)[50:55]]
    with mtls_client(mtls, "privacy") as c:
        # Verifying needs the key: asked of a principal that may not read
        # it, the call fails before anything is deleted.
        with pytest.raises(vaultd.PermissionDenied, match="receipt_key"):
            c.delete_many(ids)
        assert c.export(ids[0]).attributes
        receipts = c.delete_many(ids, receipt_key=key)
    assert [r.found for r in receipts] == [True] * 5
    with mtls_client(mtls, "privacy", receipt_key=key) as c:
        assert c.delete_many(ids)[0].found is False   # already gone


def test_a_failed_batch_reports_what_was_done_and_what_is_pending(plain):
    ids = [cid for cid, _ in consumers()[196:200]]
    with plain_client(plain) as c:
        with pytest.raises(vaultd.PartialDeletion) as e:
            c.delete_many(ids[:2] + ["", ids[2]], batch_size=2)
        assert [r.found for r in e.value.receipts] == [True, True]
        assert [p[0] for p in e.value.pending] == ["", ids[2]]
        assert isinstance(e.value.cause, vaultd.InvalidArgument)
        # Sent again as reported (same request ids), minus the bad one.
        done = c.delete_many([p for p in e.value.pending if p[0]])
        assert done[0].request_id == e.value.pending[1][1] and done[0].found
        with pytest.raises(TypeError):
            c.delete_many("one-id-as-a-string")


def test_a_receipt_with_an_empty_dataset_listed_does_not_verify(plain):
    import dataclasses
    with plain_client(plain) as c:
        c.put("in-no-dataset@example.test", {"age": "50"})
        r = c.delete("in-no-dataset@example.test")
        assert r.affected_datasets == ()
        vaultd.verify_receipt(r, c.receipt_public_key())
        with pytest.raises(vaultd.ReceiptInvalid, match="affected_datasets"):
            vaultd.verify_receipt(dataclasses.replace(r, affected_datasets=("",)),
                                  c.receipt_public_key())
