"""Integrity of a consumer's set of attributes, and `vaultd --check`.

LMDB has no page checksums: a damaged record can vanish from its database.
A consumer's values are one record, tagged under the vault's index key, so
a missing or swapped record is DATA_LOSS, never a silently shorter answer;
`vaultd --check` walks the whole store offline. (Consumers of the older
layouts, a record per attribute and a manifest, are read and moved on
write: tests/unit/test_writer.c, test_older_layouts_read_and_move_on_write.)
"""
import pathlib
import subprocess
import sys

import grpc
import lmdb
import pytest

from conftest import VAULTD, pb

# These tests read or damage LMDB's own files, or use its tools.
pytestmark = pytest.mark.lmdb_only

ROOT = pathlib.Path(__file__).resolve().parents[2]


def env(d):
    return lmdb.open(str(d.data_dir / "db"), max_dbs=16, subdir=True)


def refs(d):
    e = env(d)
    db = e.open_db(b"consumers", create=False)
    with e.begin() as t:
        out = [bytes(k) for k, _ in t.cursor(db=db)]
    e.close()
    return out


def drop(d, name, key):
    e = env(d)
    db = e.open_db(name, create=False)
    with e.begin(write=True) as t:
        assert t.delete(key, db=db)
    e.close()


def check(d):
    return subprocess.run([VAULTD, "--check", "--dev", "--data-dir",
                           str(d.data_dir)], capture_output=True, text=True,
                          timeout=120)


def export(d, cid):
    return d.call("/vault.v1.Consumers/ExportConsumer",
                  pb.ExportConsumerRequest(consumer_id=cid),
                  pb.ExportConsumerResponse)


def fetch(d, attrs):
    ch = d.channel()
    try:
        rows = []
        for b in d.stream(ch, "/vault.v1.Features/FetchFeatures",
                          pb.FetchFeaturesRequest(purpose="training",
                                                  dataset_id="ds-int",
                                                  attributes=attrs),
                          pb.FeatureBatch):
            rows += b.rows
        return rows
    finally:
        ch.close()


def data_loss(fn, *args):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args)
    assert e.value.code() == grpc.StatusCode.DATA_LOSS, e.value
    assert e.value.details() == "stored data failed its integrity check"


def one_consumer(fresh):
    fresh.start()
    fresh.put("int-1@example.test", email="int-1@example.test", zip="94110",
              device="mobile")
    assert fresh.stop() == 0
    [ref] = refs(fresh)
    return ref


def test_missing_values_record_is_data_loss(fresh):
    ref = one_consumer(fresh)
    drop(fresh, b"attrs", ref)
    fresh.start()
    cid = "int-1@example.test"
    data_loss(fresh.get, cid)
    data_loss(fresh.get, cid, ["device"])
    # Without its record nothing says which attributes it had.
    data_loss(fresh.get, cid, ["age"])
    data_loss(export, fresh, cid)
    data_loss(fetch, fresh, ["device"])
    assert fresh.stop() == 0
    r = check(fresh)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "int-1" not in r.stdout + r.stderr


def put_raw(d, key, value):
    e = env(d)
    db = e.open_db(b"attrs", create=False)
    with e.begin(write=True) as t:
        t.put(key, value, db=db)
    e.close()


def test_empty_values_record_in_its_place_is_data_loss(fresh):
    """A well-formed empty record with a made-up seal: no consumer is left
    out of a dataset as if it had no values; its seal fails first."""
    ref = one_consumer(fresh)
    put_raw(fresh, ref, b"\x01\x00\x00" + bytes(45))
    fresh.start()
    data_loss(fetch, fresh, ["device"])
    data_loss(fresh.get, "int-1@example.test")
    assert fresh.stop() == 0


def test_a_damaged_values_record_does_not_block_deletion(fresh):
    ref = one_consumer(fresh)
    e = env(fresh)
    db = e.open_db(b"attrs", create=False)
    with e.begin() as t:
        rec = bytearray(t.get(ref, db=db))
    e.close()
    rec[-1] ^= 1                        # the seal's tag
    put_raw(fresh, ref, bytes(rec))
    fresh.start()
    cid = "int-1@example.test"
    data_loss(fresh.get, cid)
    fresh.delete(cid)
    with pytest.raises(grpc.RpcError) as err:
        fresh.get(cid)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "failed their check" in fresh.log()
    assert fresh.stop() == 0


def test_values_record_of_another_consumer_is_data_loss(fresh):
    fresh.start()
    fresh.put("int-1@example.test", email="int-1@example.test", zip="94110")
    fresh.put("int-2@example.test", email="int-2@example.test", zip="10001")
    assert fresh.stop() == 0
    a, b = refs(fresh)
    e = env(fresh)
    db = e.open_db(b"attrs", create=False)
    with e.begin(write=True) as t:
        t.put(a, t.get(b, db=db), db=db)
    e.close()
    fresh.start()
    cids = ["int-1@example.test", "int-2@example.test"]
    # One of the two now holds the other's record; its ref is in the tag.
    outcomes = []
    for cid in cids:
        try:
            outcomes.append(fresh.get(cid))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.DATA_LOSS, err
            outcomes.append(None)
    assert outcomes.count(None) == 1, outcomes
    assert fresh.stop() == 0
    assert check(fresh).returncode != 0


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_format_set_back_is_data_loss(fresh, fmt):
    """The consumer record's format byte set back, its values record gone:
    read through an older layout the consumer would look empty. The header
    is bound into the wrapped DEK, so its DEK does not open."""
    ref = one_consumer(fresh)
    e = env(fresh)
    db = e.open_db(b"consumers", create=False)
    with e.begin(write=True) as t:
        rec = bytearray(t.get(ref, db=db))
        assert rec[0] == 4
        rec[0] = fmt
        t.put(ref, bytes(rec), db=db)
    e.close()
    if fmt != 3:
        drop(fresh, b"attrs", ref)
    fresh.start()
    cid = "int-1@example.test"
    data_loss(fresh.get, cid)
    data_loss(fresh.get, cid, ["age"])
    data_loss(export, fresh, cid)
    data_loss(fetch, fresh, ["device"])
    with pytest.raises(grpc.RpcError) as err:
        fresh.put(cid, age="40")
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert fresh.stop() == 0
    r = check(fresh)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "int-1" not in r.stdout + r.stderr


def test_record_of_the_older_layout_beside_the_values_record(fresh):
    """A stray ref | name record changes no answer, and --check finds it."""
    ref = one_consumer(fresh)
    e = env(fresh)
    db = e.open_db(b"attrs", create=False)
    with e.begin(write=True) as t:
        t.put(ref + b"age", b"\x01" + bytes(80), db=db)
    e.close()
    fresh.start()
    cid = "int-1@example.test"
    assert fresh.get(cid) == {"email": cid, "zip": "94110", "device": "mobile"}
    assert fresh.get(cid, ["age"]) == {}
    assert fresh.stop() == 0
    r = check(fresh)
    assert r.returncode != 0, r.stdout + r.stderr


def test_check_clean_store_and_refuses_while_running(fresh):
    fresh.start()
    for i in range(5):
        fresh.put(f"c{i}@example.test", email=f"c{i}@example.test", age=str(30 + i))
    fresh.call("/vault.v1.Consumers/SetConsent",
               pb.SetConsentRequest(consumer_id="c1@example.test",
                                    purpose="research", granted=True,
                                    source="web"),
               pb.SetConsentResponse)
    assert len(fetch(fresh, ["age"])) == 5      # lineage of a dataset
    fresh.delete("c2@example.test")             # a deletion after lineage
    fresh.delete("c0@example.test")
    r = check(fresh)
    assert r.returncode != 0 and "running" in r.stdout + r.stderr, r.stderr
    assert fresh.stop() == 0
    r = check(fresh)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "damaged 0" in r.stdout, r.stdout


def test_check_finds_orphaned_attributes(fresh):
    ref = one_consumer(fresh)
    drop(fresh, b"consumers", ref)
    fresh.start()
    with pytest.raises(grpc.RpcError) as e:
        fresh.get("int-1@example.test")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert fresh.stop() == 0
    r = check(fresh)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "orphaned" in r.stdout, r.stdout


def test_random_flips_never_answer_silently():
    """A few flips of the experiment (tests/fault/corrupt_flips.py)."""
    p = subprocess.run([sys.executable, str(ROOT / "tests/fault/corrupt_flips.py"),
                        "--flips", "8", "--consumers", "40", "--seed", "1"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "silent 0" in p.stdout


CRASH_VAULTD = ROOT / "build-crash" / "vaultd"


@pytest.mark.skipif(not CRASH_VAULTD.exists(),
                    reason="needs scripts/build --crash (build-crash/vaultd)")
@pytest.mark.parametrize("point", ["put.before_values", "put.after_values"])
def test_crash_in_put_leaves_the_values_record_whole(fresh, monkeypatch, point):
    import conftest
    monkeypatch.setattr(conftest, "VAULTD", str(CRASH_VAULTD))
    cid = "crash-1@example.test"
    fresh.start()
    fresh.put(cid, email=cid, device="mobile")
    assert fresh.stop() == 0
    monkeypatch.setenv("VAULT_CRASH_AT", point)
    fresh.start()
    with pytest.raises(grpc.RpcError):
        fresh.put(cid, device="tablet", age="33")
    assert fresh.wait_exit() == -9
    monkeypatch.delenv("VAULT_CRASH_AT")
    fresh.start()
    assert fresh.get(cid) == {"email": cid, "device": "mobile"}
    assert fresh.stop() == 0
    r = subprocess.run([str(CRASH_VAULTD), "--check", "--dev", "--data-dir",
                        str(fresh.data_dir)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
