"""FetchFeatures shards and GetFeatureSpec's category labels (issue 17,
points 4 and 5): the N shards of a stream are disjoint and together exactly
the unsharded stream, rare values counted over the whole stream; page tokens
resume only their own shard; listed categories come with their tokens."""
import concurrent.futures
from collections import Counter

import grpc
import pytest

from conftest import pb
from test_features import fetch as fetch_features

K = 5                              # the dev schema's suppression_k
ATTRS = ["age", "device", "income_band", "converted"]
PLAIN = ["age", "converted"]       # no category: nothing to count


def fetch(d, attributes=ATTRS, shard=None, batch_size=8, page_token="",
          dataset="ds-shards", limit_batches=None, purpose="training"):
    """The batches of one stream; shard is (index, count) or None."""
    return fetch_features(d, purpose, dataset, attributes, batch_size,
                          page_token, limit_batches=limit_batches, shard=shard)


def row_list(batches):
    return [(bytes(r.pseudonym), tuple(r.tokens)) for b in batches for r in b.rows]


def spec(d, purpose="training"):
    r = d.call("/vault.v1.Features/GetFeatureSpec",
               pb.GetFeatureSpecRequest(purpose=purpose), pb.GetFeatureSpecResponse)
    return {a.attribute: a for a in r.attributes}


def put(d, first, n, device):
    d.put_many((f"s{i}", dict(age=str(18 + i % 60), device=device,
                              income_band="middle",
                              converted="true" if i % 2 else "false"))
               for i in range(first, first + n))


def shards(d, n, attributes=ATTRS, together=False):
    """Each shard's rows, fetched a page of 8 at a time: one shard after the
    other, or all at once (calls that run together share their counts of
    rare values instead of each reading every consumer: shardmeet.h)."""
    def one(i):
        batches = fetch(d, attributes, shard=(i, n))
        assert all(len(b.rows) <= 8 for b in batches)
        return row_list(batches)
    if not together:
        return [one(i) for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def device_counts(rows):
    return Counter(t[1] for _, t in rows)


def holders(full, token, parts):
    """How many consumers of each shard hold token in the whole stream."""
    has = {p for p, t in full if t[1] == token}
    return [sum(p in has for p, _ in s) for s in parts]


def test_shards_together_are_the_unsharded_stream(daemon):
    # tv: 3 holders (< k, suppressed); tablet: k holders (>= k, kept).
    put(daemon, 0, 200, "mobile")
    put(daemon, 200, 90, "desktop")
    put(daemon, 290, 3, "tv")
    put(daemon, 293, K, "tablet")
    n_tablet, nxt = K, 293 + K
    other = spec(daemon)["device"].other_token

    def whole():
        rows = row_list(fetch(daemon))
        assert len(rows) == len({p for p, _ in rows}) == nxt
        counts = device_counts(rows)
        assert counts[other] == 3                    # tv suppressed
        tablet = [t for t, c in counts.items() if c == n_tablet]
        assert len(tablet) == 1 and tablet[0] != other
        return rows, tablet[0]

    for n in (1, 2, 7):
        full, tablet = whole()
        if n > 1:
            # Some shard must hold tablet fewer than k times (but at least
            # once), or a per-shard count would look right by chance: add
            # holders until one does (each lands in a shard by chance: 30
            # more all in the shards already holding k is a 2^-30 chance).
            for _ in range(31):
                per_shard = holders(full, tablet, shards(daemon, n, PLAIN))
                if any(0 < c < K for c in per_shard):
                    break
                assert n_tablet < K + 30, ("no shard holds tablet 1 to k-1 "
                                           "times", per_shard)
                put(daemon, nxt, 1, "tablet")
                n_tablet, nxt = n_tablet + 1, nxt + 1
                full, tablet = whole()
        parts = shards(daemon, n)
        # Fetched all at once, each shard is the same.
        assert shards(daemon, n, together=True) == parts
        names = [{p for p, _ in s} for s in parts]
        assert sum(len(s) for s in names) == len(full)          # disjoint
        assert set().union(*names) == {p for p, _ in full}
        assert set().union(*map(set, parts)) == set(full)       # same tokens
        for s in parts:
            assert len(s) == len(set(s))
            # Each shard comes in stream order: a slice of the whole.
            order = [p for p, _ in full if p in {q for q, _ in s}]
            assert [p for p, _ in s] == order
        if n > 1:
            # Not degenerate: every shard has rows, none has all of them.
            assert all(0 < len(s) < len(full) for s in parts)
            per_shard = holders(full, tablet, parts)
            assert any(0 < c < K for c in per_shard)
            assert sum(per_shard) == n_tablet
            assert [device_counts(s)[tablet] for s in parts] == per_shard
        # Without a category (other shards skipped before they are read):
        # the same union, and each consumer in the same shard.
        plain = row_list(fetch(daemon, PLAIN))
        plain_parts = shards(daemon, n, PLAIN)
        assert sorted(r for s in plain_parts for r in s) == sorted(plain)
        assert [{p for p, _ in s} for s in plain_parts] == names


def test_bad_shards_are_refused(daemon):
    put(daemon, 0, 10, "mobile")
    for index, count, field, words in [
            (0, 1025, "shard_count", "at most 1024"),
            (1, 0, "shard_index", "needs shard_count"),
            (2, 2, "shard_index", "below shard_count"),
            (1, 1, "shard_index", "below shard_count"),
            (4000000000, 7, "shard_index", "below shard_count")]:
        with pytest.raises(grpc.RpcError) as e:
            fetch(daemon, shard=(index, count))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details().startswith(field + ":"), e.value.details()
        assert words in e.value.details()
    # The edges that are valid: the last of 1024 shards, one shard of one.
    assert len(row_list(fetch(daemon, shard=(1023, 1024)))) < 10
    assert len(row_list(fetch(daemon, shard=(0, 1)))) == 10


def test_page_tokens_resume_their_own_shard_only(daemon):
    put(daemon, 0, 120, "mobile")
    whole = [row_list(fetch(daemon, PLAIN, shard=(i, 2), batch_size=5))
             for i in range(2)]
    assert all(len(s) > 10 for s in whole)
    first = fetch(daemon, PLAIN, shard=(0, 2), batch_size=5, limit_batches=1)
    token = first[0].next_page_token
    assert token
    for shard in [(1, 2), None, (0, 3), (0, 1)]:
        with pytest.raises(grpc.RpcError) as e:
            fetch(daemon, PLAIN, shard=shard, batch_size=5, page_token=token)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details().startswith("page_token"), e.value.details()
    # An unsharded token does not resume a shard either.
    plain = fetch(daemon, PLAIN, batch_size=5, limit_batches=1)
    with pytest.raises(grpc.RpcError) as e:
        fetch(daemon, PLAIN, shard=(0, 2), page_token=plain[0].next_page_token)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Each shard resumes with its own token: the rest of that shard.
    for i in range(2):
        head = fetch(daemon, PLAIN, shard=(i, 2), batch_size=5, limit_batches=2)
        rest = fetch(daemon, PLAIN, shard=(i, 2), batch_size=5,
                     page_token=head[-1].next_page_token)
        got = row_list(head) + row_list(rest)
        assert got == whole[i] and len(row_list(rest)) > 0
        assert rest[-1].next_page_token == ""


def test_feature_spec_labels_listed_categories(daemon):
    before = spec(daemon)
    labels = {l.value: l.token for l in before["device"].labels}
    assert list(labels) == ["mobile", "desktop", "tablet", "tv", "other"]
    assert len(set(labels.values())) == 5
    assert before["device"].other_token not in labels.values()
    assert [l.value for l in before["income_band"].labels] == [
        "low", "lower_middle", "middle", "upper_middle", "high"]
    # Open categories and other kinds have none.
    assert before["ethnicity"].kind == "category"
    for name in ("ethnicity", "age", "converted", "last_purchase"):
        assert len(before[name].labels) == 0, name
    # Tokens are per purpose, like the stream's.
    shared = {l.value: l.token for l in spec(daemon, "ad_targeting_shared")["device"].labels}
    assert set(shared) == set(labels) and not set(shared.values()) & set(labels.values())

    put(daemon, 0, 12, "mobile")
    put(daemon, 12, 7, "desktop")
    put(daemon, 19, 2, "tv")
    daemon.put_many((f"e{i}", dict(ethnicity="group_a")) for i in range(6))
    # Labels do not depend on the data: the same before any consumer held
    # a value, and for values nobody holds (tablet, other) or too few (tv).
    after = spec(daemon)
    assert after == before
    counts = device_counts(row_list(fetch(daemon)))
    assert counts == {labels["mobile"]: 12, labels["desktop"]: 7,
                      before["device"].other_token: 2, 0: 6}
    assert labels["tv"] not in counts


def ctl_rows(daemon, *extra):
    r = daemon.ctl("features", "--purpose", "training", "--dataset", "ds-ctl",
                   "--batch-size", "7", *extra)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pseudonym,age,device,")
    return lines[1:]


def test_vaultctl_shard_and_format(daemon):
    put(daemon, 0, 80, "mobile")
    put(daemon, 80, 3, "tv")
    whole = ctl_rows(daemon)
    parts = [ctl_rows(daemon, "--shard", f"{i}/2") for i in range(2)]
    assert len(whole) == 83 and all(0 < len(p) < 83 for p in parts)
    assert sorted(parts[0] + parts[1]) == sorted(whole)
    assert len(set(parts[0]) | set(parts[1])) == 83
    for bad in ("2/2", "x", "0/0", "1/1025", "-1/2", "0/2x", "/2", "1", "+0/2",
                "0/ 2"):
        r = daemon.ctl("features", "--purpose", "training", "--dataset",
                       "ds-ctl", "--shard", bad)
        assert r.returncode == 2, (bad, r.stderr)
        assert "vaultctl features: --shard:" in r.stderr, (bad, r.stderr)
        assert "I < N <= 1024" in r.stderr and r.stdout == ""
    r = daemon.ctl("features", "--purpose", "training", "--dataset", "ds-ctl",
                   "--format", "parquet")
    assert r.returncode == 2 and r.stdout == ""
    assert "vaultctl features: --format: 'parquet' is not a format (csv, " \
        "jsonl)" in r.stderr, r.stderr
