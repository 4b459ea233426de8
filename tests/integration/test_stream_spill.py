"""A FetchFeatures stream whose snapshot holds more rows than
stream_memory_rows keeps the rest sealed in a temporary file (fetch.h,
"Memory"): what leaves the vault is exactly what it would be with every row
in memory, unsharded, sharded and resumed, and no file is left behind."""
from test_feature_shards import K, PLAIN, fetch, put, row_list, shards, spec

SMALL = 64         # the least stream_memory_rows: ~300 rows make 5 buckets


def streams(d):
    """Everything the tests compare: the whole stream, 3 shards fetched one
    after the other and together, and a stream resumed from a page token."""
    whole = fetch(d)
    first = fetch(d, limit_batches=7)
    resumed = fetch(d, page_token=first[-1].next_page_token)
    return {
        "whole": row_list(whole),
        "plain": row_list(fetch(d, PLAIN)),
        "shards": shards(d, 3),
        "together": shards(d, 3, together=True),
        "resumed": row_list(first) + row_list(resumed),
    }


def named_spills(d):
    return [p for p in d.data_dir.rglob("*") if "vaultd-stream" in p.name]


def test_a_spilled_stream_is_the_stream_held_in_memory(daemon):
    put(daemon, 0, 200, "mobile")
    put(daemon, 200, 90, "desktop")
    put(daemon, 290, 3, "tv")             # fewer than k: OTHER
    put(daemon, 293, K, "tablet")         # k: released
    n = 293 + K
    held = streams(daemon)
    assert len(held["whole"]) == n
    other = spec(daemon)["device"].other_token
    assert sum(t[1] == other for _, t in held["whole"]) == 3

    daemon.stop()
    with open(daemon.data_dir / "vaultd.conf", "a") as f:
        f.write(f"\nstream_memory_rows = {SMALL};\n")
    daemon.start()
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
