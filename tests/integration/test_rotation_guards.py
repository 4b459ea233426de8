"""Rotation guards (issue 11, points 9-11): versions only move forward, no cap
below the keyring's maximum on how many versions a store has had, and a
rotation starts atomically or not at all."""
import subprocess
import threading
import time

import grpc
import pytest

from conftest import VAULTD, pb
from test_deletion import key_status
from test_rotation import destroy, rotate, versions


def configure(d, **settings):
    """Sets integer settings in a stopped daemon's config."""
    conf = d.data_dir / "vaultd.conf"
    lines = [l for l in conf.read_text().splitlines()
             if l.split("=")[0].strip() not in settings]
    lines += [f"{k} = {v};" for k, v in settings.items()]
    conf.write_text("\n".join(lines) + "\n")


def gen_key(d, version):
    subprocess.run([VAULTD, "--gen-key",
                    str(d.data_dir / "keys" / f"master-{version}.key")], check=True)


def assert_refused(d, version, why="newer"):
    with pytest.raises(grpc.RpcError) as e:
        rotate(d, str(version))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert why in e.value.details(), e.value.details()


# ------------------------------------------------------------- point 9

def test_rotation_never_goes_back_to_an_older_version(fresh):
    fresh.start()
    for i in range(5):
        fresh.put(f"b{i}", age=str(30 + i))
    assert rotate(fresh)[-1].new_version == 2
    assert versions(fresh)[1].state == "decrypt-only"

    # The retired version 1 is still loaded: it must not come back.
    assert_refused(fresh, 1)
    st = key_status(fresh)
    assert st.active_version == 2 and not st.rotation_in_progress
    vs = versions(fresh)
    assert vs[1].dek_count == 0 and vs[2].dek_count == 5
    assert fresh.delete("b0", request_id="dsr-b0").epoch == 2
    assert_refused(fresh, 2)        # the active one

    # A gap: version 5 from an operator's file; 3 and 4 are older than it.
    gen_key(fresh, 5)
    assert rotate(fresh, "5")[-1].new_version == 5
    gen_key(fresh, 3)
    assert fresh.stop() == 0
    fresh.start()                   # master-3.key is loaded at start now
    assert_refused(fresh, 3)
    assert_refused(fresh, 2)

    # Destroyed versions stay in the past too.
    destroy(fresh, 1)
    destroy(fresh, 2)
    assert_refused(fresh, 1)
    assert_refused(fresh, 2)
    assert key_status(fresh).active_version == 5
    assert fresh.delete("b1", request_id="dsr-b1").epoch == 5
    # The next one is after every version the store has had.
    assert rotate(fresh)[-1].new_version == 6
    assert {v: s.state for v, s in versions(fresh).items()} == {
        1: "destroyed", 2: "destroyed", 5: "decrypt-only", 6: "active"}
    assert fresh.get("b2") == {"age": "32"}


# ------------------------------------------------------------ point 10

ROTATIONS = 100


def test_a_hundred_versions(fresh):
    fresh.start()
    assert fresh.stop() == 0
    # No janitor pass during the manual part.
    configure(fresh, janitor_interval_ms=3600000)
    fresh.start()
    for i in range(5):
        fresh.put(f"h{i}", age=str(20 + i))
    for n in range(2, ROTATIONS + 2):
        assert rotate(fresh)[-1].new_version == n
        destroy(fresh, n - 1)
    top = ROTATIONS + 1
    st = key_status(fresh)
    assert st.active_version == top and not st.rotation_in_progress
    vs = {v.version: v for v in st.versions}
    assert sorted(vs) == list(range(1, top + 1))
    assert all(vs[n].state == "destroyed" for n in range(1, top))
    assert vs[top].state == "active" and vs[top].dek_count == 5

    # A receipt's epoch is the active version, final once it is destroyed.
    r = fresh.delete("h0", request_id="dsr-h0")
    assert r.epoch == top and r.final_at_ms == 0
    assert versions(fresh)[top].pending_final_deletions == 1
    assert rotate(fresh)[-1].new_version == top + 1
    gone = destroy(fresh, top)
    again = fresh.delete("h0", request_id="dsr-h0")
    assert again.epoch == top and again.final_at_ms == gone.destroyed_at_ms
    assert fresh.stop() == 0

    # The janitor's shred epochs still see the active version past 64.
    configure(fresh, shred_epoch_s=1, shred_retain_s=0, janitor_interval_ms=100)
    fresh.start()
    r = fresh.delete("h1", request_id="dsr-h1")
    assert r.epoch == top + 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        vs = versions(fresh)
        if vs[top + 1].state == "destroyed":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the janitor never rotated away from version %d" % (top + 1))
    assert key_status(fresh).active_version > top + 1
    assert fresh.delete("h1", request_id="dsr-h1").final_at_ms > 0
    assert fresh.get("h2") == {"age": "22"}


# ------------------------------------------------------------ point 11

def fill(d, threads=4):
    """Puts consumers until the store refuses them; returns how many went in.
    The values are as long as the schema allows (wide_email: 3 KB, so that
    a 16 MiB map takes about 3,000 puts, not 10,000)."""
    stop, done, codes = threading.Event(), [], []
    big = "x" * 3000 + "@example.test"

    def worker(w):
        i = 0
        with d.channel() as ch:
            while not stop.is_set():
                try:
                    d.call("/vault.v1.Consumers/PutAttributes",
                           pb.PutAttributesRequest(consumer_id=f"f{w}-{i}", attributes=[
                               pb.Attribute(name="email", value=f"{i}{big}"),
                               pb.Attribute(name="zip", value=f"{i % 100000:05d}")]),
                           pb.PutAttributesResponse, channel=ch)
                    done.append(1)
                except grpc.RpcError as e:
                    codes.append(e.code())
                    stop.set()      # full, or a failure asserted below
                i += 1

    ts = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes[:5]
    # Fill what the other threads' failures left free, and what each
    # store-journal checkpoint gives back (the pages its pinned snapshot
    # held: a refusal asks for one, and one runs every second). Full is a
    # refusal that still holds after a pause with no write in it: a test
    # that stopped at the first refusal once saw its rotation start.
    i = 0
    with d.channel() as ch:
        for _ in range(60):
            time.sleep(1.5)
            went_in = 0
            with pytest.raises(grpc.RpcError) as e:
                while True:
                    d.put(f"last-{i}", email=f"{i}{big}", channel=ch)
                    i, went_in = i + 1, went_in + 1
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            if went_in == 0:
                return len(done) + i
    pytest.fail("the store never stayed full")


def wide_email(d):
    """Lets a stopped daemon's email attribute hold 4,000 bytes."""
    conf = d.data_dir / "vaultd.conf"
    text, email = conf.read_text(), 'name = "email"; type = "string"; '
    assert email + "max_length = 254;" in text
    conf.write_text(text.replace(email + "max_length = 254;",
                                 email + "max_length = 4000;"))


def assert_unrotated(d, n_consumers):
    st = key_status(d)
    assert st.active_version == 1 and not st.rotation_in_progress, st
    assert [v.version for v in st.versions] == [1]
    assert st.versions[0].dek_count == n_consumers


@pytest.mark.lmdb_only  # fills the LMDB map: PostgreSQL has none
def test_rotation_on_a_full_store_starts_or_changes_nothing(fresh):
    fresh.start()
    assert fresh.stop() == 0
    configure(fresh, map_size_mb=16)
    wide_email(fresh)
    fresh.start()
    fill(fresh)
    n = key_status(fresh).versions[0].dek_count
    assert n > 1000
    keys = fresh.data_dir / "keys"
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as e:
            rotate(fresh)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert_unrotated(fresh, n)
        assert "nothing changed" in e.value.details()
        # A failed start leaves no key file a later start would take up.
        assert sorted(p.name for p in keys.glob("master-*")) == ["master-1.key"]
    # An operator's key file is refused the same way, and kept.
    gen_key(fresh, 2)
    with pytest.raises(grpc.RpcError) as e:
        rotate(fresh, "2")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_unrotated(fresh, n)
    assert (keys / "master-2.key").exists()
    assert fresh.stop() == 0

    # The janitor finds nothing to resume.
    fresh.start()
    time.sleep(1.5)
    assert_unrotated(fresh, n)
    assert fresh.stop() == 0

    # With room again, the retry makes exactly one new version.
    configure(fresh, map_size_mb=64)
    fresh.start()
    assert_unrotated(fresh, n)
    p = rotate(fresh, "2")
    assert p[0].new_version == 2 and not p[0].done
    assert p[-1].done and p[-1].new_version == 2 and p[-1].rewrapped == n
    st = key_status(fresh)
    assert st.active_version == 2 and [v.version for v in st.versions] == [1, 2]
    assert fresh.get("f0-0")["zip"] == "00000"
