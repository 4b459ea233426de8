"""Automated decision-making technology (issue 18, point 7): a purpose
marked admt = true (the dev schema's "eligibility") excludes consumers who
opted out of ADMT, in the same snapshot as the data; ExportConsumer shows
the flag and the ADMT datasets that used the consumer, when and with which
features."""
import json

import grpc
import pytest

from conftest import pb
from test_consent_feed import watch
from test_features import fetch, load, rows


def consent(d, cid, source="api", **kw):
    return d.call("/vault.v1.Consumers/SetConsent",
                  pb.SetConsentRequest(consumer_id=cid, source=source, **kw),
                  pb.SetConsentResponse)


def export(d, cid):
    return d.call("/vault.v1.Consumers/ExportConsumer",
                  pb.ExportConsumerRequest(consumer_id=cid),
                  pb.ExportConsumerResponse)


def test_opt_out_of_admt_excludes_from_admt_purposes_only(daemon):
    load(daemon, 10)
    before = rows(fetch(daemon, "eligibility", dataset="elig-1",
                        attributes=["age"]))
    assert len(before) == 10
    r = consent(daemon, "c2@example.test", opt_out_admt=pb.FLAG_SET)
    assert r.opt_out_admt and not r.opt_out_sale_share
    # A source that is itself an ADMT opt-out sets the flag too.
    assert consent(daemon, "c3@example.test", source="admt_opt_out").opt_out_admt
    after = rows(fetch(daemon, "eligibility", dataset="elig-1",
                       attributes=["age"]))
    assert len(after) == 8 and set(after) < set(before)
    # Every other purpose keeps them.
    for p in ("service", "training", "ad_targeting_shared"):
        assert len(rows(fetch(daemon, p, attributes=["age"]))) == 10, p
    # The dataset that holds them is told (WatchConsent).
    events = watch(daemon, purpose="eligibility")
    assert {bytes(e.pseudonym) for e in events} == set(before) - set(after)
    # GetAttributes for the purpose withholds them too.
    with pytest.raises(grpc.RpcError) as err:
        daemon.get("c2@example.test", ["age"], purpose="eligibility")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not cover purpose 'eligibility'" in err.value.details()
    # Opting back in restores them; GPC does not touch ADMT.
    consent(daemon, "c2@example.test", opt_out_admt=pb.FLAG_CLEAR)
    consent(daemon, "c4@example.test", source="gpc")
    assert len(rows(fetch(daemon, "eligibility", dataset="elig-1",
                          attributes=["age"]))) == 9


def test_export_lists_the_admt_datasets_with_times_and_features(daemon):
    load(daemon, 10)
    fetch(daemon, "eligibility", dataset="elig-a", attributes=["age"])
    fetch(daemon, "eligibility", dataset="elig-a",
          attributes=["income_band", "age"])
    fetch(daemon, "eligibility", dataset="elig-b", attributes=["purchases_90d"])
    fetch(daemon, "training", dataset="train-x", attributes=["age"])
    consent(daemon, "c1@example.test", opt_out_admt=pb.FLAG_SET)
    x = export(daemon, "c1@example.test")
    assert x.opt_out_admt
    assert set(x.datasets) == {"elig-a", "elig-b", "train-x"}
    uses = {u.dataset_id: u for u in x.admt_uses}
    assert set(uses) == {"elig-a", "elig-b"}          # not training
    a, b = uses["elig-a"], uses["elig-b"]
    assert a.purpose == b.purpose == "eligibility"
    assert list(a.attributes) == ["age", "income_band"]
    assert list(b.attributes) == ["purchases_90d"]
    assert 0 < a.first_fetched_at_ms <= a.last_fetched_at_ms
    assert a.first_fetched_at_ms <= b.first_fetched_at_ms
    assert x.consent_history[-1].opt_out_admt

    r = daemon.ctl("export", "c1@example.test")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["opt_out_admt"] is True
    assert [u["dataset_id"] for u in doc["admt_uses"]] == ["elig-a", "elig-b"]
    assert doc["admt_uses"][0]["attributes"] == ["age", "income_band"]


def test_vaultctl_admt_flags(daemon):
    daemon.put("v@example.test", age="40")
    r = daemon.ctl("consent", "v@example.test", "--opt-out-admt", json=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["opt_out_admt"] is True
    r = daemon.ctl("consent", "v@example.test", "--opt-in-admt")
    assert r.returncode == 0 and "opt_out_admt=false" in r.stdout
    r = daemon.ctl("consent", "v@example.test", "--opt-out-admt",
                   "--opt-in-admt")
    assert r.returncode == 2
    assert "--opt-out-admt and --opt-in-admt" in r.stderr
    # The legal hold (DROP: exempted) goes the same way.
    r = daemon.ctl("consent", "v@example.test", "--legal-hold", json=True)
    assert r.returncode == 0 and json.loads(r.stdout)["legal_hold"] is True
    r = daemon.ctl("consent", "v@example.test", "--no-legal-hold")
    assert r.returncode == 0 and "legal_hold=false" in r.stdout


def test_admt_before_data_holds_for_data_written_later(daemon):
    r = consent(daemon, "early@example.test", source="admt_opt_out")
    assert r.created and r.opt_out_admt
    daemon.put("early@example.test", age="51", income_band="high")
    daemon.put("other@example.test", age="52", income_band="high")
    got = rows(fetch(daemon, "eligibility", dataset="elig-e",
                     attributes=["age"]))
    assert len(got) == 1
    assert len(rows(fetch(daemon, "training", attributes=["age"]))) == 2
