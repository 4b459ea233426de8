"""The right to know (issue 11, points 13 and 14): ExportConsumer lists
everything the vault holds of a consumer, schema or not, and every access
to it, each detail in its own field."""
import json
import re
import subprocess
import time

import grpc
import lmdb
import pytest

from conftest import health_pb, SANITIZER_MARKS, VAULTD, pb

CID = "know-me@example.test"
EXPORT = "/vault.v1.Consumers/ExportConsumer"
FETCH = "/vault.v1.Features/FetchFeatures"


def export(d, cid=CID):
    return d.call(EXPORT, pb.ExportConsumerRequest(consumer_id=cid),
                  pb.ExportConsumerResponse)


def consent(d, cid, purpose, granted, source):
    d.call("/vault.v1.Consumers/SetConsent",
           pb.SetConsentRequest(consumer_id=cid, purpose=purpose,
                                granted=granted, source=source),
           pb.SetConsentResponse)


def fetch(d, purpose, dataset, attributes, batch_size=0):
    with d.channel() as ch:
        return list(d.stream(ch, FETCH, pb.FetchFeaturesRequest(
            purpose=purpose, dataset_id=dataset, attributes=attributes,
            batch_size=batch_size), pb.FeatureBatch))


def audit(d, **flt):
    with d.channel() as ch:
        return list(d.stream(ch, "/vault.v1.Audit/QueryAudit",
                             pb.QueryAuditRequest(**flt), pb.AuditEntry))


def method(m):
    return m.rsplit("/", 1)[-1]


def drop_age_from_schema(d):
    """Removes `age` from the dev vault's schema (and the purpose naming it)."""
    conf = d.data_dir / "vaultd.conf"
    text = conf.read_text()
    new = re.sub(r'  \{ name = "age";[^}]*\},\n', "", text)
    new = new.replace('"age", ', "")
    assert new != text and '"age"' not in new
    conf.write_text(new)


def purge(d):
    r = subprocess.run([VAULTD, "--dev", "--data-dir", str(d.data_dir),
                        "--purge-unknown-attributes"],
                       capture_output=True, text=True, timeout=120)
    assert not any(m in r.stderr for m in SANITIZER_MARKS), r.stderr
    return r


# ------------------------------------------------------------ point 13

def test_attributes_outside_schema_still_exported_and_purged(fresh):
    d = fresh.start()
    d.put(CID, email=CID, age="41", device="mobile")
    d.put("other@example.test", email="other@example.test", zip="94110")
    assert d.stop() == 0
    drop_age_from_schema(d)
    d.start()

    # GetAttributes answers schema attributes only (documented).
    assert d.get(CID) == {"email": CID, "device": "mobile"}
    r = export(d)
    attrs = {a.name: a for a in r.attributes}
    assert set(attrs) == {"email", "age", "device"}
    assert attrs["age"].value == "41" and attrs["age"].outside_schema
    assert attrs["age"].updated_at_ms > 0
    assert not attrs["email"].outside_schema and not attrs["device"].outside_schema

    # A rekey re-encrypts them too: they still open afterwards.
    d.call("/vault.v1.Keys/RotateConsumerKey",
           pb.RotateConsumerKeyRequest(consumer_id=CID), pb.RotateConsumerKeyResponse)
    assert {a.name: a.value for a in export(d).attributes}["age"] == "41"

    # Start-up says how many, and nothing that names a consumer or a value.
    log = d.log()
    assert re.search(r"\b1 stored attribute value\(s\) of 1 consumer\(s\) "
                     r"outside the schema", log), log
    assert "know-me" not in log

    # The purge refuses to run while the daemon holds the store.
    busy = purge(d)
    assert busy.returncode != 0
    assert "running" in busy.stderr or "locked" in busy.stderr, busy.stderr
    assert d.stop() == 0

    done = purge(d)
    assert done.returncode == 0, done.stderr
    assert "purged 1 attribute value(s) of 1 consumer(s)" in done.stdout
    assert "know-me" not in done.stdout + done.stderr
    d.start()
    r = export(d)
    assert {a.name for a in r.attributes} == {"email", "device"}
    # The purge is in the consumer's history, with what it removed.
    purged = [h for h in r.access_history if h.kind == "purge"]
    assert len(purged) == 1 and list(purged[0].attribute_names) == ["age"]
    v = d.call("/vault.v1.Audit/VerifyAudit", pb.VerifyAuditRequest(),
               pb.VerifyAuditResponse)
    assert v.ok, v
    # Nothing left outside: the next start is silent about it.
    assert d.stop() == 0
    n = len(d.log())
    d.start()
    assert "outside the schema" not in d.log()[n:]


def test_purge_with_nothing_outside_the_schema(fresh):
    d = fresh.start()
    d.put(CID, email=CID)
    assert d.stop() == 0
    done = purge(d)
    assert done.returncode == 0, done.stderr
    assert "purged 0 attribute value(s) of 0 consumer(s)" in done.stdout
    d.start()
    assert d.get(CID) == {"email": CID}


# ------------------------------------------------------------ point 14

def test_history_names_one_per_element_and_details_in_fields(daemon):
    daemon.put(CID, email=CID, age="30")
    daemon.get(CID, ["email", "age"])
    consent(daemon, CID, "research", True, "api")
    export(daemon)
    h = export(daemon).access_history
    by = {method(a.method): a for a in h}
    assert list(by["PutAttributes"].attribute_names) == ["email", "age"]
    assert by["PutAttributes"].kind == "write"
    assert list(by["GetAttributes"].attribute_names) == ["email", "age"]
    assert by["GetAttributes"].kind == "read"
    assert by["GetAttributes"].purpose == "service"
    assert list(by["SetConsent"].attribute_names) == []
    assert by["SetConsent"].source == "api"
    assert by["SetConsent"].purpose == "research"
    assert by["SetConsent"].kind == "consent"
    assert list(by["ExportConsumer"].attribute_names) == []
    assert by["ExportConsumer"].kind == "export"
    assert all(a.audit_seq > 0 for a in h)

    # The auditor's view has the same fields.
    e = {method(x.method): x for x in audit(daemon, consumer_id=CID)}
    assert list(e["GetAttributes"].attribute_names) == ["email", "age"]
    assert list(e["SetConsent"].attribute_names) == [] and e["SetConsent"].source == "api"
    assert e["ExportConsumer"].kind == "export"

    # vaultctl prints the names as a list, and the new fields.
    r = daemon.ctl("export", CID)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    get = [a for a in doc["access_history"] if a["method"].endswith("/GetAttributes")]
    assert get[0]["attribute_names"] == ["email", "age"] and get[0]["kind"] == "read"
    sc = [a for a in doc["access_history"] if a["method"].endswith("/SetConsent")]
    assert sc[0]["source"] == "api" and sc[0]["attribute_names"] == []


def test_fetch_features_in_history_and_audited_once(daemon):
    for i in range(6):
        daemon.put(f"f{i}@example.test", age=str(20 + i), device="mobile")
    t0 = int(time.time() * 1000)
    before = len(audit(daemon, method=FETCH))
    fetch(daemon, "training", "run-7", ["age", "device"], batch_size=4)
    fetch(daemon, "training", "run-7", ["age"])            # the dataset exists now
    entries = audit(daemon, method=FETCH)[before:]
    assert len(entries) == 2, entries
    assert all(e.dataset_id == "run-7" and e.purpose == "training" for e in entries)
    assert [list(e.attribute_names) for e in entries] == [["age", "device"], ["age"]]

    r = export(daemon, "f1@example.test")
    assert list(r.datasets) == ["run-7"]
    rel = [a for a in r.access_history if method(a.method) == "FetchFeatures"]
    assert len(rel) == 2, r.access_history
    for a in rel:
        assert a.kind == "feature_release" and a.dataset_id == "run-7"
        assert a.purpose == "training" and a.principal == "dev"
        assert t0 <= a.at_ms <= int(time.time() * 1000)
    assert sorted(a.at_ms for a in r.access_history) == [a.at_ms for a in r.access_history]

    # A consumer the dataset never received has no such record.
    daemon.put("late@example.test", age="50")
    r = export(daemon, "late@example.test")
    assert list(r.datasets) == []
    assert not [a for a in r.access_history if a.kind == "feature_release"]


def test_refused_fetch_is_one_entry_and_not_a_release(daemon):
    daemon.put(CID, age="33")
    fetch(daemon, "training", "run-8", ["age"])
    with pytest.raises(grpc.RpcError):
        fetch(daemon, "research", "run-8", ["age"])       # bound to training
    entries = [e for e in audit(daemon, method=FETCH) if e.dataset_id == "run-8"]
    assert [e.outcome for e in entries] == ["ok", "invalid"]
    rel = [a for a in export(daemon).access_history if a.kind == "feature_release"]
    assert [(a.purpose, a.outcome) for a in rel] == [("training", "ok")]


def _field(b):
    b = b.encode() if isinstance(b, str) else b
    return len(b).to_bytes(2, "big") + b


@pytest.mark.lmdb_only  # writes old-format entries into LMDB's file
def test_old_comma_joined_entries_still_export(daemon):
    ref = bytes.fromhex(daemon.put(CID, email=CID, age="30").consumer_ref)
    assert daemon.stop() == 0
    env = lmdb.open(str(daemon.data_dir / "db"), max_dbs=16, subdir=True)
    log, idx, meta = (env.open_db(n) for n in (b"audit", b"audit_ref", b"meta"))
    with env.begin(write=True) as txn:
        head = txn.get(b"audit_head", db=meta)
        seq = int.from_bytes(head[:8], "big")
        now = int(time.time() * 1000)
        for i, (m, detail, purpose) in enumerate([
                ("/vault.v1.Consumers/GetAttributes", "email,age", "service"),
                ("/vault.v1.Consumers/SetConsent", "source=api", "research"),
                ("/vault.v1.Consumers/ExportConsumer", "export", "")]):
            seq += 1
            body = b"".join([_field("dev"), _field(m), _field(ref), _field(detail),
                             _field(purpose), _field(""), _field("ok")])
            rec = b"\x01" + (now + i).to_bytes(8, "big") + head[8:] + bytes(32) + body
            txn.put(seq.to_bytes(8, "big"), rec, db=log)
            txn.put(ref, seq.to_bytes(8, "big"), db=idx)
        txn.put(b"audit_head", seq.to_bytes(8, "big") + bytes(32), db=meta)
    env.close()
    # The forged entries cannot carry real chain hashes (the audit key is
    # secret): the daemon must be told to serve on a broken chain.
    conf = daemon.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + '\naudit_broken = "not_serving";\n')
    daemon.start(ready=(health_pb.HealthCheckResponse.NOT_SERVING,))
    by = {method(a.method): a for a in export(daemon).access_history}
    assert list(by["GetAttributes"].attribute_names) == ["email", "age"]
    assert list(by["SetConsent"].attribute_names) == []
    assert by["SetConsent"].source == "api"
    assert list(by["ExportConsumer"].attribute_names) == []
    assert by["ExportConsumer"].kind == "export"


def test_consent_history_keeps_every_change_in_order(daemon):
    """Issue 18, point 4: consent changes are appended, never overwritten;
    the export shows each with the state it left, its source and who made
    it, oldest first, next to the consents as they stand now."""
    d = daemon
    d.call("/vault.v1.Consumers/SetConsent",
           pb.SetConsentRequest(consumer_id=CID, source="gpc"),
           pb.SetConsentResponse)                  # before any data
    d.put(CID, age="40")
    consent(d, CID, "research", True, "user")
    consent(d, CID, "research", False, "user")
    d.call("/vault.v1.Consumers/SetConsent",
           pb.SetConsentRequest(consumer_id=CID, source="api",
                                limit_sensitive=pb.FLAG_SET),
           pb.SetConsentResponse)
    # A refused change leaves no trace in the history.
    with pytest.raises(grpc.RpcError):
        consent(d, CID, "astrology", True, "user")
    x = export(d)
    got = [(e.purpose, e.granted, e.opt_out_sale_share, e.limit_sensitive,
            e.source) for e in x.consent_history]
    assert got == [("", False, True, False, "gpc"),
                   ("research", True, True, False, "user"),
                   ("research", False, True, False, "user"),
                   ("", False, True, True, "api")], got
    assert not x.consent_history_truncated
    ats = [e.at_ms for e in x.consent_history]
    assert ats == sorted(ats) and ats[0] > 0
    assert {e.principal for e in x.consent_history} == {"dev"}
    # The state now: research denied, and the flags.
    assert [(c.purpose, c.granted) for c in x.consents] == [("research", False)]
    assert x.opt_out_sale_share and x.limit_sensitive
    # vaultctl shows it too.
    r = d.ctl("export", CID)
    assert r.returncode == 0, r.stderr
    assert [e["source"] for e in json.loads(r.stdout)["consent_history"]] == \
        ["gpc", "user", "user", "api"]
