"""A FetchFeatures stream whose snapshot holds more rows than
stream_memory_rows keeps the rest sealed in a temporary file (fetch.h,
"Memory"): what leaves the vault is exactly what it would be with every row
in memory, unsharded, sharded and resumed, and no file is left behind."""
import concurrent.futures

import grpc
import pytest

from test_feature_shards import K, PLAIN, put, row_list, spec
from test_features import fetch as fetch_features

# The least stream_memory_rows. 3,000 consumers make 3 buckets of about
# 1,000 rows (2 of about 500 for a shard of 3); a row of the 4 attributes
# is 96 bytes, so each bucket seals blocks of 170 rows into the file.
SMALL, N = 1024, 3000 + K
ATTRS = ["age", "device", "income_band", "converted"]


def fetch(d, attributes=ATTRS, shard=None, page_token="", limit_batches=None):
    return fetch_features(d, "training", "ds-spill", attributes, 100,
                          page_token, limit_batches=limit_batches, shard=shard)


def shards(d, n, together=False):
    one = lambda i: row_list(fetch(d, shard=(i, n)))
    if not together:
        return [one(i) for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def streams(d):
    """Everything the tests compare: the whole stream, 3 shards fetched one
    after the other and together, and a stream resumed from a page token."""
    first = fetch(d, limit_batches=13)
    resumed = fetch(d, page_token=first[-1].next_page_token)
    return {
        "whole": row_list(fetch(d)),
        "plain": row_list(fetch(d, PLAIN)),
        "shards": shards(d, 3),
        "together": shards(d, 3, together=True),
        "resumed": row_list(first) + row_list(resumed),
    }


def named_spills(d):
    return [p for p in d.data_dir.rglob("*") if "vaultd-stream" in p.name]


def configure(d, **settings):
    d.stop()
    with open(d.data_dir / "vaultd.conf", "a") as f:
        for name, value in settings.items():
            f.write(f"\n{name} = {value};\n")
    d.start()


def test_a_spilled_stream_is_the_stream_held_in_memory(daemon):
    put(daemon, 0, 2000, "mobile")
    put(daemon, 2000, 997, "desktop")
    put(daemon, 2997, 3, "tv")             # fewer than k: OTHER
    put(daemon, 3000, K, "tablet")         # k: released
    held = streams(daemon)
    assert len(held["whole"]) == N
    other = spec(daemon)["device"].other_token
    assert sum(t[1] == other for _, t in held["whole"]) == 3

    configure(daemon, stream_memory_rows=SMALL)
    spilled = streams(daemon)
    for name in held:
        assert spilled[name] == held[name], name
    # The pages are in order across buckets: the resumed stream has every
    # row once (its tokens may differ: it counts rare values over its rows).
    assert [p for p, _ in spilled["resumed"]] == [p for p, _ in spilled["whole"]]
    assert sorted(r for s in spilled["shards"] for r in s) == sorted(held["whole"])
    # The temporary files had no name (O_TMPFILE), and none is left.
    assert named_spills(daemon) == []
    daemon.assert_sanitizer_clean()


def test_the_temporary_files_have_a_limit(daemon):
    """stream_spill_max_mb bounds every stream's files together: a stream
    that would pass it is refused, naming the setting, and nothing is lost.
    14,000 rows of 4 attributes seal about 1.2 MB (the rows still in each
    bucket's open block stay in memory); one shard of two, about 0.6 MB."""
    daemon.put_many((f"big{i}", dict(age=str(20 + i % 50), device="mobile",
                                     income_band="middle", converted="true"))
                    for i in range(14000))
    configure(daemon, stream_memory_rows=SMALL, stream_spill_max_mb=1)
    with pytest.raises(grpc.RpcError) as e:
        fetch(daemon)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "stream_spill_max_mb" in e.value.details()
    # What the refused stream held was given back: half of it fits, twice.
    for _ in range(2):
        half = row_list(fetch(daemon, shard=(0, 2)))
        assert 6000 < len(half) < 8000
    daemon.assert_sanitizer_clean()
