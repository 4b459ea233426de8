"""Deletion at scale: signed receipts, idempotency, the deletion ledger."""
import concurrent.futures
import json
import threading
import time

import grpc
import nacl.exceptions
import nacl.signing
import pytest

from conftest import pb
from test_features import fetch, rows


def delete_many(d, ids, request_ids=None):
    req = pb.DeleteConsumersRequest(requests=[
        pb.DeleteConsumerRequest(consumer_id=c,
                                 request_id=request_ids[i] if request_ids else "")
        for i, c in enumerate(ids)])
    return d.call("/vault.v1.Deletion/DeleteConsumers", req,
                  pb.DeleteConsumersResponse, timeout=120).receipts


def key_status(d):
    return d.call("/vault.v1.Keys/GetKeyStatus", pb.GetKeyStatusRequest(),
                  pb.GetKeyStatusResponse)


def verify(receipt, pk):
    nacl.signing.VerifyKey(pk).verify(bytes(receipt.signed_bytes),
                                      bytes(receipt.signature))
    text = bytes(receipt.signed_bytes).decode()
    fields = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                  for line in text.splitlines()[1:])
    assert text.startswith("vaultd deletion receipt v1\n")
    assert fields["request_id"] == receipt.request_id
    assert fields["consumer_ref"] == receipt.consumer_ref
    assert fields["found"] == ("true" if receipt.found else "false")
    assert int(fields["deleted_at_ms"]) == receipt.deleted_at_ms
    assert int(fields["epoch"]) == receipt.epoch
    assert fields["datasets"] == ",".join(receipt.affected_datasets)
    return fields


def watch(d, after=0, follow=False, timeout=30, limit=None, **flt):
    out = []
    with d.channel() as ch:
        call = d.stream(ch, "/vault.v1.Deletion/WatchDeletions",
                        pb.WatchDeletionsRequest(after_seq=after, follow=follow, **flt),
                        pb.DeletionEvent, timeout=timeout)
        for e in call:
            out.append(e)
            if limit is not None and len(out) == limit:
                call.cancel()
                break
    return out


def load_parallel(d, n, prefix):
    def put(i):
        d.put(f"{prefix}{i}", age=str(20 + i % 40), device="mobile",
              income_band="middle", converted="true")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))


def test_batch_deletion_receipts_and_ledger(daemon):
    load_parallel(daemon, 1000, "b")
    train = rows(fetch(daemon, "training", dataset="train-1", batch_size=5000))
    ads = rows(fetch(daemon, "ad_targeting_shared", dataset="ads-1",
                     attributes=["age"], batch_size=5000))
    assert len(train) == len(ads) == 1000
    pk = bytes(key_status(daemon).receipt_public_key)
    assert len(pk) == 32

    ids = [f"b{i}" for i in range(1000)]
    t0 = time.monotonic()
    receipts = delete_many(daemon, ids, [f"dsr-{i}" for i in range(1000)])
    assert len(receipts) == 1000
    assert time.monotonic() - t0 < 60
    for r in receipts:
        assert r.found and r.epoch == 1 and r.final_at_ms == 0
        assert list(r.affected_datasets) == ["ads-1", "train-1"]
        verify(r, pk)
    # Gone from every later read.
    assert rows(fetch(daemon, "training", dataset="train-2")) == {}
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("b7")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # Repeats return the identical receipts, signature included.
    again = delete_many(daemon, ids[:50], [f"dsr-{i}" for i in range(50)])
    for a, b in zip(again, receipts[:50]):
        assert bytes(a.signed_bytes) == bytes(b.signed_bytes)
        assert bytes(a.signature) == bytes(b.signature)
    single = daemon.delete("b3", request_id="dsr-3")
    assert bytes(single.signed_bytes) == bytes(receipts[3].signed_bytes)

    # Unknown consumers get a receipt saying so.
    nobody = daemon.delete("never-existed", request_id="dsr-x")
    assert not nobody.found and not nobody.affected_datasets
    verify(nobody, pk)

    # A request id of another consumer: refused, nothing deleted.
    daemon.put("keeper", age="30")
    with pytest.raises(grpc.RpcError) as e:
        delete_many(daemon, ["keeper", "b1"], ["fresh-id", "dsr-2"])
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "requests[1].request_id" in e.value.details()
    assert daemon.get("keeper") == {"age": "30"}

    # The ledger: exactly one event per (consumer, dataset that received it),
    # with the pseudonym that dataset saw.
    ev_train = watch(daemon, dataset_id="train-1")
    ev_ads = watch(daemon, dataset_id="ads-1")
    assert {bytes(e.pseudonym) for e in ev_train} == set(train)
    assert {bytes(e.pseudonym) for e in ev_ads} == set(ads)
    assert len(ev_train) == len(ev_ads) == 1000
    everything = watch(daemon)
    assert len(everything) == 2000
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2000
    by_purpose = watch(daemon, purpose="training")
    assert [e.seq for e in by_purpose] == [e.seq for e in ev_train]
    # Resumable by sequence number.
    mid = everything[1233].seq
    assert [e.seq for e in watch(daemon, after=mid)] == seqs[1234:]


def test_watch_follows_live(daemon):
    load_parallel(daemon, 3, "w")
    fetch(daemon, "training", dataset="live")
    got = []

    def follower():
        got.extend(watch(daemon, dataset_id="live", follow=True, timeout=30, limit=2))

    t = threading.Thread(target=follower)
    t.start()
    time.sleep(0.5)
    daemon.delete("w0")
    time.sleep(0.3)
    daemon.delete("w1")
    t.join(20)
    assert not t.is_alive()
    assert len(got) == 2 and got[0].seq < got[1].seq


def test_watch_errors(daemon):
    for kwargs, code in [({"dataset_id": "nope"}, grpc.StatusCode.NOT_FOUND),
                         ({"dataset_id": "bad id"}, grpc.StatusCode.INVALID_ARGUMENT),
                         ({"purpose": "astrology"}, grpc.StatusCode.INVALID_ARGUMENT),
                         ({"dataset_id": "a", "purpose": "training"},
                          grpc.StatusCode.INVALID_ARGUMENT)]:
        with pytest.raises(grpc.RpcError) as e:
            watch(daemon, **kwargs)
        assert e.value.code() == code


def test_ledger_events_expire(fresh):
    fresh.start()
    assert fresh.stop() == 0
    conf = fresh.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "\nledger_retention_s = 0;\njanitor_interval_ms = 20;\n")
    fresh.start()
    load_parallel(fresh, 2, "x")
    fetch(fresh, "training", dataset="gone")
    fresh.delete("x0")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            watch(fresh)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "expired" in e.details()
            break
        time.sleep(0.05)
    else:
        pytest.fail("the ledger event never expired")


@pytest.mark.lmdb_only  # reads LMDB's databases with mdb_stat
def test_deleted_values_are_collected(daemon):
    daemon.put("gc-1", email="gc-1@example.test", zip="12345")
    daemon.delete("gc-1")
    import subprocess
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["mdb_stat", "-s", "attrs", str(daemon.data_dir / "db")],
                             capture_output=True, text=True, check=True).stdout
        if "Entries: 0" in out:
            break
        time.sleep(0.1)
    else:
        pytest.fail("attribute records were never collected: " + out)
    # Re-created at once: nothing of the old consumer comes back.
    daemon.put("gc-1", zip="99999")
    assert daemon.get("gc-1") == {"zip": "99999"}


def test_vaultctl_delete_receipt_verify_and_watch(daemon, tmp_path):
    load_parallel(daemon, 5, "v")
    fetch(daemon, "training", dataset="cli-ds")
    r = daemon.ctl("delete", "v0", "v1", "v2", json=True)
    assert r.returncode == 0, r.stderr
    receipts = tmp_path / "receipts.jsonl"
    receipts.write_text(r.stdout)
    assert len(r.stdout.splitlines()) == 3
    ok = daemon.ctl("receipt", "verify", str(receipts))
    assert ok.returncode == 0 and ok.stdout.count("valid") == 3, ok.stdout + ok.stderr
    # Any change to a receipt breaks it.
    doc = json.loads(r.stdout.splitlines()[0])
    doc["consumer_ref"] = "0" * 64
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(doc) + "\n")
    res = daemon.ctl("receipt", "verify", str(bad))
    assert res.returncode == 1 and "INVALID" in res.stdout
    ids = tmp_path / "ids.txt"
    ids.write_text("v3\nv4\n")
    r = daemon.ctl("delete", "--from-file", str(ids))
    assert r.returncode == 0 and r.stdout.count("found=true") == 2
    r = daemon.ctl("watch-deletions", "--dataset", "cli-ds")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 5
    assert json.loads(r.stdout.splitlines()[-1])["dataset_id"] == "cli-ds"
