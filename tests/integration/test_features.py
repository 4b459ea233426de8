"""Consent, tokenization and FetchFeatures end to end."""
import subprocess

import grpc
import pytest

from conftest import pb

ATTRS = ["age", "device", "income_band", "converted"]


def fetch(d, purpose, dataset=None, attributes=ATTRS, batch_size=0,
          page_token="", token="dev", limit_batches=None, raw=False, shard=None):
    """All batches of one FetchFeatures stream (or the first limit_batches);
    shard is (index, count) or None."""
    dataset = dataset if dataset is not None else f"ds-{purpose}"
    index, count = shard or (0, 0)
    with d.channel() as ch:
        call = d.stream(ch, "/vault.v1.Features/FetchFeatures",
                        pb.FetchFeaturesRequest(purpose=purpose, dataset_id=dataset,
                                                attributes=attributes,
                                                batch_size=batch_size,
                                                page_token=page_token,
                                                shard_index=index,
                                                shard_count=count),
                        None if raw else pb.FeatureBatch, token=token, timeout=60)
        out = []
        for b in call:
            out.append(b)
            if limit_batches is not None and len(out) == limit_batches:
                call.cancel()
                break
        return out


def rows(batches):
    return {bytes(r.pseudonym): list(r.tokens) for b in batches for r in b.rows}


def spec(d, purpose):
    r = d.call("/vault.v1.Features/GetFeatureSpec",
               pb.GetFeatureSpecRequest(purpose=purpose), pb.GetFeatureSpecResponse)
    return {a.attribute: a for a in r.attributes}


def consent(d, cid, purpose="", granted=False, source="api", **flags):
    req = pb.SetConsentRequest(consumer_id=cid, purpose=purpose, granted=granted,
                               source=source, **flags)
    return d.call("/vault.v1.Consumers/SetConsent", req, pb.SetConsentResponse)


def load(d, n, prefix="c"):
    devices = ["mobile", "desktop", "tablet"]
    d.put_many((f"{prefix}{i}@example.test", dict(
        age=str(18 + i % 50), device=devices[i % 3], income_band="middle",
        converted="true" if i % 2 else "false",
        email=f"{prefix}{i}@example.test", ethnicity="group_a"))
        for i in range(n))


def test_consent_gates_every_purpose(daemon):
    load(daemon, 20)
    base = {p: rows(fetch(daemon, p, attributes=["age"]))
            for p in ("service", "training", "ad_targeting_shared", "research")}
    assert [len(base[p]) for p in ("service", "training", "ad_targeting_shared",
                                   "research")] == [20, 20, 20, 0]

    # An opt-out of training removes exactly that consumer, from training only.
    consent(daemon, "c3@example.test", "training", False)
    after = rows(fetch(daemon, "training", attributes=["age"]))
    gone = set(base["training"]) - set(after)
    assert len(after) == 19 and len(gone) == 1
    assert len(rows(fetch(daemon, "service", attributes=["age"]))) == 20
    consent(daemon, "c3@example.test", "training", True)
    assert set(rows(fetch(daemon, "training", attributes=["age"]))) == set(base["training"])

    # GPC excludes from every sale/share purpose, and nothing else.
    r = consent(daemon, "c4@example.test", source="gpc")
    assert r.opt_out_sale_share
    consent(daemon, "c5@example.test", opt_out_sale_share=pb.FLAG_SET)
    shared = rows(fetch(daemon, "ad_targeting_shared", attributes=["age"]))
    assert len(shared) == 18 and set(shared) < set(base["ad_targeting_shared"])
    assert len(rows(fetch(daemon, "training", attributes=["age"]))) == 20
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("c4@example.test", purpose="ad_targeting_shared")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "c4" not in e.value.details()
    consent(daemon, "c5@example.test", opt_out_sale_share=pb.FLAG_CLEAR)
    assert len(rows(fetch(daemon, "ad_targeting_shared", attributes=["age"]))) == 19

    # Opt-in purposes need consent, for features and for reads alike.
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("c6@example.test", purpose="research")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    consent(daemon, "c6@example.test", "research", True)
    consent(daemon, "c7@example.test", "research", True)
    assert len(rows(fetch(daemon, "research", attributes=["age"]))) == 2
    assert daemon.get("c6@example.test", ["age"], purpose="research") == {"age": "24"}


def test_consent_errors(daemon):
    daemon.put("solo", age="40")
    for kwargs, field in [({"purpose": "astrology", "granted": True}, "purpose"),
                          ({"purpose": "training", "source": "Bad Source"}, "source"),
                          ({"purpose": "training", "source": ""}, "source"),
                          ({}, "nothing to change")]:
        with pytest.raises(grpc.RpcError) as e:
            consent(daemon, "solo", **kwargs)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in e.value.details()
    # A refused change creates no consumer; a valid one does (consent
    # before data, below).
    with pytest.raises(grpc.RpcError) as e:
        consent(daemon, "nobody", "astrology", True)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        daemon.call("/vault.v1.Consumers/ExportConsumer",
                    pb.ExportConsumerRequest(consumer_id="nobody"),
                    pb.ExportConsumerResponse)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert consent(daemon, "nobody", "training", True).created


def test_limit_sensitive(daemon):
    load(daemon, 6)
    consent(daemon, "c1@example.test", limit_sensitive=pb.FLAG_SET)
    eth = spec(daemon, "training")["ethnicity"]
    assert eth.sensitive and eth.kind == "category"
    got = rows(fetch(daemon, "training", attributes=["ethnicity"]))
    tokens = sorted(t[0] for t in got.values())
    assert tokens.count(0) == 1 and len(set(tokens[1:])) == 1 and tokens[1] != 0
    # The service itself is essential: the value stays readable there.
    assert daemon.get("c1@example.test", ["ethnicity"]) == {"ethnicity": "group_a"}
    r = daemon.call("/vault.v1.Consumers/GetAttributes",
                    pb.GetAttributesRequest(consumer_id="c1@example.test",
                                            purpose="training"),
                    pb.GetAttributesResponse)
    assert "ethnicity" not in {a.name for a in r.attributes}
    assert list(r.withheld) == ["ethnicity"]


def test_no_plaintext_in_stream_bytes(daemon):
    load(daemon, 8, prefix="zz-secret-")
    raw = b"".join(fetch(daemon, "training", attributes=[], raw=True))
    assert len(raw) > 8 * 16
    for i in range(8):
        assert f"zz-secret-{i}@example.test".encode() not in raw
    for value in (b"mobile", b"desktop", b"tablet", b"middle", b"group_a"):
        assert value not in raw


def test_tokens_and_pseudonyms_are_stable(daemon):
    load(daemon, 12)
    s = spec(daemon, "training")
    first = rows(fetch(daemon, "training"))
    # Same value, same token: 4 consumers each hold mobile/desktop/tablet (< k=5 -> OTHER).
    dev = [t[1] for t in first.values()]
    assert set(dev) == {s["device"].other_token}
    load(daemon, 12, prefix="d")        # now 8 of each
    second = rows(fetch(daemon, "training"))
    assert set(first) <= set(second)
    dev = [t[1] for t in second.values()]
    assert len(set(dev)) == 3 and s["device"].other_token not in dev
    # Buckets follow the edges: age 18 -> bucket 2 (edges 18, 25, ...).
    assert {t[0] for t in second.values()} <= {2, 3, 4, 5}
    assert daemon.stop() == 0
    daemon.start()
    assert rows(fetch(daemon, "training")) == second
    # Different purposes give disjoint pseudonyms and different tokens.
    shared = rows(fetch(daemon, "ad_targeting_shared"))
    assert not set(shared) & set(second)
    assert {t[1] for t in shared.values()}.isdisjoint({t[1] for t in second.values()})


def test_rare_values_suppressed_and_counts_exact(daemon):
    s = spec(daemon, "training")["income_band"]
    assert s.k == 5
    other = s.other_token
    for i in range(4):
        daemon.put(f"r{i}", income_band="high")
    toks = {t[0] for t in rows(fetch(daemon, "training", attributes=["income_band"])).values()}
    assert toks == {other}
    daemon.put("r4", income_band="high")
    toks = {t[0] for t in rows(fetch(daemon, "training", attributes=["income_band"])).values()}
    assert len(toks) == 1 and other not in toks
    high = toks.pop()
    # An update moves the count: high falls to 4, so it is suppressed again.
    daemon.put("r4", income_band="low")
    got = rows(fetch(daemon, "training", attributes=["income_band"]))
    assert {t[0] for t in got.values()} == {other}
    # Rewriting the same value does not count twice.
    daemon.put("r4", income_band="high")
    daemon.put("r4", income_band="high")
    got = rows(fetch(daemon, "training", attributes=["income_band"]))
    assert {t[0] for t in got.values()} == {high}
    # A deletion takes the value out of the count.
    daemon.delete("r0")
    got = rows(fetch(daemon, "training", attributes=["income_band"]))
    assert len(got) == 4 and {t[0] for t in got.values()} == {other}


def test_broken_stream_resumes_without_gaps_or_duplicates(daemon):
    load(daemon, 45)
    full = rows(fetch(daemon, "training", batch_size=7))
    assert len(full) == 45
    part = fetch(daemon, "training", batch_size=7, limit_batches=3)
    assert len(part) == 3 and part[-1].next_page_token
    rest = fetch(daemon, "training", batch_size=7, page_token=part[-1].next_page_token)
    seen = [bytes(r.pseudonym) for b in part + rest for r in b.rows]
    assert len(seen) == len(set(seen)) == 45
    assert set(seen) == set(full)
    assert rest[-1].next_page_token == ""
    # A token of another query is refused.
    with pytest.raises(grpc.RpcError) as e:
        fetch(daemon, "training", dataset="other", batch_size=7,
              page_token=part[-1].next_page_token)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        fetch(daemon, "training", page_token="not-a-token")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deleted_consumer_never_appears_again(daemon):
    load(daemon, 10)
    before = rows(fetch(daemon, "training"))
    consent(daemon, "c2@example.test", "training", False)
    without = set(rows(fetch(daemon, "training")))
    consent(daemon, "c2@example.test", "training", True)
    victim = (set(before) - without).pop()
    daemon.delete("c2@example.test")
    after = rows(fetch(daemon, "training"))
    assert victim not in after and len(after) == 9
    # The same id again is a new consumer with a new pseudonym.
    load(daemon, 3)
    again = rows(fetch(daemon, "training"))
    assert victim not in again and len(again) == 10


def test_fetch_errors(daemon):
    daemon.put("e1", age="30")
    fetch(daemon, "training")
    cases = [
        (dict(purpose="astrology"), grpc.StatusCode.INVALID_ARGUMENT, "purpose"),
        (dict(purpose=""), grpc.StatusCode.INVALID_ARGUMENT, "purpose"),
        (dict(dataset=""), grpc.StatusCode.INVALID_ARGUMENT, "dataset_id"),
        (dict(dataset="bad id!"), grpc.StatusCode.INVALID_ARGUMENT, "dataset_id"),
        (dict(attributes=["email"]), grpc.StatusCode.INVALID_ARGUMENT, "free text"),
        (dict(attributes=["shoe_size"]), grpc.StatusCode.INVALID_ARGUMENT, "unknown"),
        (dict(attributes=["age", "age"]), grpc.StatusCode.INVALID_ARGUMENT, "twice"),
        (dict(batch_size=10001), grpc.StatusCode.INVALID_ARGUMENT, "batch_size"),
        (dict(purpose="service", dataset="ds-training"),
         grpc.StatusCode.INVALID_ARGUMENT, "already used for purpose 'training'"),
        (dict(purpose="ad_targeting_shared", attributes=["ethnicity"]),
         grpc.StatusCode.PERMISSION_DENIED, "not allowed for purpose"),
    ]
    for kwargs, code, text in cases:
        args = dict(purpose="training")
        args.update(kwargs)
        with pytest.raises(grpc.RpcError) as e:
            fetch(daemon, **args)
        assert e.value.code() == code, kwargs
        assert text in e.value.details()


def test_ml_principal_purposes(daemon):
    daemon.stop()
    ml = daemon.add_principal("trainer", ["ml"], ["training"])
    daemon.start()
    load(daemon, 3)
    assert len(rows(fetch(daemon, "training", token=ml))) == 3
    with pytest.raises(grpc.RpcError) as e:
        fetch(daemon, "research", token=ml)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("c1@example.test", token=ml)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.lmdb_only  # reads LMDB's databases with mdb_stat
def test_lineage_recorded_per_dataset(daemon):
    load(daemon, 7)
    fetch(daemon, "training", dataset="run-1", batch_size=3)
    fetch(daemon, "training", dataset="run-1")          # again: no duplicates
    fetch(daemon, "training", dataset="run-2", attributes=["age"])
    out = subprocess.run(["mdb_stat", "-s", "lineage_rows", str(daemon.data_dir / "db")],
                         capture_output=True, text=True, check=True).stdout
    assert "Entries: 14" in out, out
    daemon.delete("c0@example.test")
    out = subprocess.run(["mdb_stat", "-s", "lineage_rows", str(daemon.data_dir / "db")],
                         capture_output=True, text=True, check=True).stdout
    assert "Entries: 12" in out, out


@pytest.mark.lmdb_only  # reads LMDB's databases with mdb_stat
def test_a_stream_stopped_early_leaves_lineage_for_what_it_sent(daemon):
    """Lineage goes on record ahead of the pages sent, never more rows
    ahead than have left (fetch.h; the exact steps: test_golden's
    test_lineage_ahead_of_pages): a stream cancelled after its first page
    leaves lineage for every row it sent."""
    load(daemon, 20)
    got = fetch(daemon, "training", dataset="ahead", batch_size=2,
                limit_batches=1)
    assert len(got[0].rows) == 2
    out = subprocess.run(["mdb_stat", "-s", "lineage_rows", str(daemon.data_dir / "db")],
                         capture_output=True, text=True, check=True).stdout
    assert int(out.split("Entries: ")[1].split()[0]) >= 2, out


def test_gpc_before_data_keeps_the_consumer_out_of_sale_and_share(daemon):
    """Consent before data: a GPC signal (or an opt-out) for a consumer the
    vault has not seen creates it with no attributes, and the data that
    comes later inherits it: the consumer never appears in a sale/share
    purpose, while purposes that are not a sale or share see it."""
    load(daemon, 6)
    r = consent(daemon, "early@example.test", source="gpc")
    assert r.created and r.opt_out_sale_share
    r = consent(daemon, "early2@example.test", "training", False)
    assert r.created and not r.opt_out_sale_share
    # Told again: the consumer exists now.
    assert not consent(daemon, "early@example.test", source="gpc").created
    daemon.put("early@example.test", age="40", device="mobile",
               income_band="middle", converted="true")
    daemon.put("early2@example.test", age="41", device="mobile",
               income_band="middle", converted="true")
    assert len(rows(fetch(daemon, "ad_targeting_shared", attributes=["age"]))) == 7
    assert len(rows(fetch(daemon, "training", attributes=["age"]))) == 7
    assert len(rows(fetch(daemon, "service", attributes=["age"]))) == 8
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("early@example.test", purpose="ad_targeting_shared")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The export shows the opt-out, and the data written after it.
    ex = daemon.call("/vault.v1.Consumers/ExportConsumer",
                     pb.ExportConsumerRequest(consumer_id="early@example.test"),
                     pb.ExportConsumerResponse)
    assert ex.opt_out_sale_share and "ds-ad_targeting_shared" not in ex.datasets
    assert {a.name for a in ex.attributes} >= {"age", "device"}
    # A consumer known only by its opt-out is in no stream (it has nothing
    # to release), and is deleted like any other.
    consent(daemon, "only-consent@example.test", source="gpc")
    assert len(rows(fetch(daemon, "training", attributes=["age"]))) == 7
    receipt = daemon.delete("only-consent@example.test", request_id="oc-1")
    assert receipt.found


def test_vaultctl_consent_refuses_opposite_flags(daemon):
    for flags in (("--opt-out-sale", "--opt-in-sale"),
                  ("--limit-sensitive", "--unlimit-sensitive"),
                  ("--purpose", "training", "--grant", "--deny")):
        r = daemon.ctl("consent", "c1@example.test", *flags)
        assert r.returncode == 2, (flags, r.stdout, r.stderr)
        assert "give at most one of" in r.stderr, r.stderr
    r = daemon.ctl("consent", "new@example.test", "--gpc", json=True)
    assert r.returncode == 0, r.stderr
    assert '"created":true' in r.stdout


def test_vaultctl_consent_and_features(daemon):
    load(daemon, 6)
    r = daemon.ctl("consent", "c1@example.test", "--purpose", "training", "--deny")
    assert r.returncode == 0, r.stderr
    r = daemon.ctl("consent", "c2@example.test", "--gpc", json=True)
    assert '"opt_out_sale_share":true' in r.stdout
    r = daemon.ctl("features", "--purpose", "training", "--dataset", "cli",
                   "--attributes", "age,device")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "pseudonym,age,device" and len(lines) == 6
    r = daemon.ctl("features", "--purpose", "ad_targeting_shared", "--dataset",
                   "cli-ads", "--format", "jsonl", "--batch-size", "2")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 5
    r = daemon.ctl("features", "--purpose", "training", "--dataset", "cli",
                   "--attributes", "email")
    assert r.returncode == 4
