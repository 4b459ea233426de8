"""WatchConsent (issue 18, point 5): a feed of the pseudonyms a dataset
received that may no longer be used for its purpose, so a training pipeline
can drop rows it already holds. Each event names one dataset and the
pseudonym that dataset saw; nothing in it links the consumer to another
purpose's pseudonym."""
import json
import threading

import grpc
import pytest

from conftest import pb
from test_features import consent, fetch, load, rows


def watch(d, after=0, follow=False, token="dev", limit=None, timeout=30,
          **flt):
    out = []
    with d.channel() as ch:
        call = d.stream(ch, "/vault.v1.Features/WatchConsent",
                        pb.WatchConsentRequest(after_seq=after, follow=follow,
                                               **flt),
                        pb.ConsentRevocation, token=token, timeout=timeout)
        for e in call:
            out.append(e)
            if limit is not None and len(out) == limit:
                call.cancel()
                break
    return out


def datasets(d):
    """Three datasets: training, a sale/share purpose and the service."""
    train = rows(fetch(d, "training", dataset="train-a", attributes=["age"]))
    ads = rows(fetch(d, "ad_targeting_shared", dataset="ads-a",
                     attributes=["age"]))
    svc = rows(fetch(d, "service", dataset="svc-a", attributes=["age"]))
    assert len(train) == len(ads) == len(svc) == 10
    return train, ads, svc


def gone(d, before, purpose, dataset):
    """The pseudonyms of before that a fresh stream no longer has."""
    now = rows(fetch(d, purpose, dataset=dataset, attributes=["age"]))
    return set(before) - set(now)


def test_opt_out_and_gpc_tell_the_datasets_that_hold_the_consumer(daemon):
    load(daemon, 10)
    train, ads, svc = datasets(daemon)
    assert watch(daemon) == []

    # An opt-out of training: one event, for the training dataset, with
    # the pseudonym that dataset holds (the one a new stream leaves out).
    consent(daemon, "c3@example.test", "training", False, source="user")
    [e] = watch(daemon)
    assert (e.seq, e.dataset_id, e.purpose) == (1, "train-a", "training")
    assert {bytes(e.pseudonym)} == gone(daemon, train, "training", "train-a")
    assert e.revoked_at_ms > 0

    # GPC: out of every sale or share purpose, and nothing else.
    consent(daemon, "c4@example.test", source="gpc")
    events = watch(daemon, after=1)
    assert [(x.seq, x.dataset_id, x.purpose) for x in events] == [
        (2, "ads-a", "ad_targeting_shared")]
    p = bytes(events[0].pseudonym)
    assert {p} == gone(daemon, ads, "ad_targeting_shared", "ads-a")
    # The event carries the ads pseudonym only: not the consumer's training
    # or service pseudonym, which would link the two datasets.
    assert p in ads and p not in train and p not in svc

    # Saying the same again, or granting again, sends nothing; a later
    # opt-out after a grant is a new event.
    consent(daemon, "c3@example.test", "training", False, source="user")
    consent(daemon, "c4@example.test", source="gpc")
    consent(daemon, "c3@example.test", "training", True, source="user")
    assert watch(daemon, after=2) == []
    consent(daemon, "c3@example.test", "training", False, source="user")
    [again] = watch(daemon, after=2)
    assert again.seq == 3 and bytes(again.pseudonym) == bytes(e.pseudonym)

    # Filters: by dataset and by purpose; the event names its purpose.
    assert [(x.seq, x.dataset_id, x.purpose) for x in watch(
        daemon, dataset_id="ads-a")] == [(2, "ads-a", "ad_targeting_shared")]
    assert [(x.dataset_id, x.purpose) for x in watch(
        daemon, dataset_id="train-a")] == [("train-a", "training")] * 2
    assert [x.seq for x in watch(daemon, purpose="training")] == [1, 3]
    assert watch(daemon, purpose="service") == []


def test_a_consumer_no_dataset_received_sends_nothing(daemon):
    load(daemon, 10)
    datasets(daemon)
    # Consent before data, and a consumer written after the streams.
    consent(daemon, "early@example.test", "training", False)
    daemon.put("late@example.test", age="30")
    consent(daemon, "late@example.test", "training", False)
    consent(daemon, "late@example.test", source="gpc")
    assert watch(daemon) == []
    # A deletion is the deletion feed's business, not this one's.
    daemon.delete("c1@example.test")
    assert watch(daemon) == []


def test_follow_delivers_a_revocation_made_while_watching(daemon):
    load(daemon, 10)
    train, _, _ = datasets(daemon)
    got = []
    t = threading.Thread(target=lambda: got.extend(
        watch(daemon, follow=True, limit=1, purpose="training")))
    t.start()
    consent(daemon, "c7@example.test", "training", False)
    t.join(timeout=30)
    assert not t.is_alive()
    assert len(got) == 1 and bytes(got[0].pseudonym) in train


def test_a_principal_sees_only_its_purposes(fresh):
    fresh.start()
    assert fresh.stop() == 0
    token = fresh.add_principal("trainer", ["ml"], ["training"])
    fresh.start()
    load(fresh, 10)
    datasets(fresh)
    consent(fresh, "c2@example.test", source="gpc")
    consent(fresh, "c2@example.test", "training", False)
    assert [x.purpose for x in watch(fresh, purpose="training",
                                     token=token)] == ["training"]
    assert [x.dataset_id for x in watch(fresh, dataset_id="train-a",
                                        token=token)] == ["train-a"]
    for flt in ({"purpose": "ad_targeting_shared"}, {"dataset_id": "ads-a"},
                {}):
        with pytest.raises(grpc.RpcError) as err:
            watch(fresh, token=token, **flt)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, flt
    for flt, code in (({"purpose": "nope"}, grpc.StatusCode.INVALID_ARGUMENT),
                      ({"dataset_id": "no-such"}, grpc.StatusCode.NOT_FOUND),
                      ({"dataset_id": "train-a", "purpose": "training"},
                       grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as err:
            watch(fresh, **flt)
        assert err.value.code() == code, flt
    assert fresh.stop() == 0


def test_vaultctl_watch_consent_prints_json_lines(daemon):
    load(daemon, 10)
    train, _, _ = datasets(daemon)
    consent(daemon, "c5@example.test", "training", False)
    r = daemon.ctl("watch-consent", "--purpose", "training")
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.splitlines()
    e = json.loads(line)
    assert e["seq"] == 1 and e["dataset_id"] == "train-a"
    assert e["purpose"] == "training"
    assert bytes.fromhex(e["pseudonym"]) in train
    assert daemon.ctl("watch-consent", "--after", "1").stdout == ""
    bad = daemon.ctl("watch-consent", "--after", "x1")
    assert bad.returncode != 0 and "not a sequence number" in bad.stderr
    assert "c5@example.test" not in daemon.log()
