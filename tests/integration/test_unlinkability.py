"""What leaves the vault must not link a consumer across purposes: page
tokens are sealed and bound to their query, each purpose's stream comes in
an order of its own, and a released token is held by at least k rows of
the stream that released it."""
import base64
import concurrent.futures

import grpc
import pytest
from scipy.stats import kendalltau

from conftest import pb
from test_deletion import watch
from test_features import consent, fetch, rows, spec

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64d(tok):
    return base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))


def load(d, n, prefix):
    ids = [f"{prefix}{i}" for i in range(n)]
    out = d.put_many((ids[i], dict(
        age=str(20 + i % 40), device=("mobile", "desktop", "tablet")[i % 3],
        income_band="middle", converted="true" if i % 2 else "false"))
        for i in range(n))
    return {cid: r.consumer_ref for cid, r in zip(ids, out)}


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def test_page_tokens_are_sealed_and_bound(daemon):
    """Regression for issue 11.3: tokens held the last row's consumer ref in
    the clear, behind an unkeyed hash, and one-character edits were served."""
    refs = load(daemon, 30, "pt")
    first = fetch(daemon, "training", batch_size=1, limit_batches=3)
    again = fetch(daemon, "training", batch_size=1, limit_batches=3)
    toks = [b.next_page_token for b in first]
    assert all(toks)
    # Fresh each time: the same position never gives the same bytes.
    assert toks[0] != again[0].next_page_token
    # No consumer ref (hex or raw), nor any pseudonym, inside a token.
    raw_refs = [bytes.fromhex(r) for r in refs.values()]
    pseudonyms = [bytes(r.pseudonym) for b in first for r in b.rows]
    for t in toks:
        blob = b64d(t)
        assert not any(r[:8] in blob for r in raw_refs)
        assert not any(p[:8] in blob for p in pseudonyms)
        assert not any(r in t for r in refs.values())
    # It resumes exactly after its page.
    rest = fetch(daemon, "training", batch_size=1000, page_token=toks[2])
    seen = [bytes(r.pseudonym) for b in first for r in b.rows] + \
           [bytes(r.pseudonym) for b in rest for r in b.rows]
    assert len(seen) == len(set(seen)) == 30
    # Every one-character edit, truncation and extension is refused.
    tok = toks[1]
    for i in range(len(tok)):
        c = B64[(B64.index(tok[i]) + 1) % 64]
        edited = tok[:i] + c + tok[i + 1:]
        assert code_of(lambda: fetch(daemon, "training", batch_size=1,
                                     page_token=edited)) == \
            grpc.StatusCode.INVALID_ARGUMENT, i
    for bad in (tok[:-1], tok[:20], tok + "A", tok + "AAAA", ""):
        want = grpc.StatusCode.OK if bad == "" else grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(lambda: fetch(daemon, "training", batch_size=1,
                                     page_token=bad, limit_batches=1)) == want
    # Bound to the query: another purpose, dataset or attribute list.
    for kw in (dict(purpose="ad_targeting_shared", attributes=["age"]),
               dict(purpose="training", dataset="elsewhere"),
               dict(purpose="training", attributes=["age"])):
        assert code_of(lambda: fetch(daemon, batch_size=1, page_token=tok,
                                     **{"dataset": "ds-training", **kw})) == \
            grpc.StatusCode.INVALID_ARGUMENT, kw


def test_page_tokens_are_bound_to_the_principal(fresh):
    token = fresh.add_principal("ml-two", ["ml"], ["training"])
    fresh.start()
    load(fresh, 5, "pp")
    mine = fetch(fresh, "training", batch_size=1, limit_batches=1)
    with pytest.raises(grpc.RpcError) as e:
        fetch(fresh, "training", batch_size=1, page_token=mine[0].next_page_token,
              token=token)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fresh.stop() == 0


def test_stream_order_is_unrelated_across_purposes(daemon):
    """Regression for issue 11.4: every purpose streamed in ref order, so two
    datasets joined by position. Consumers are identified across the two
    streams the way an attacker did, through WatchDeletions."""
    n, deleted = 10000, 3000
    load(daemon, n, "o")
    a = [bytes(r.pseudonym) for b in fetch(daemon, "training", dataset="ord-a",
                                           attributes=["age"], batch_size=5000)
         for r in b.rows]
    b = [bytes(r.pseudonym) for b in fetch(daemon, "ad_targeting_shared",
                                           dataset="ord-b", attributes=["age"],
                                           batch_size=5000)
         for r in b.rows]
    assert len(a) == len(b) == n
    pos_a = {p: i for i, p in enumerate(a)}
    pos_b = {p: i for i, p in enumerate(b)}
    with daemon.channel() as ch:
        for i in range(deleted):
            daemon.delete(f"o{i}", channel=ch)
    ev_a = watch(daemon, dataset_id="ord-a", timeout=120)
    ev_b = watch(daemon, dataset_id="ord-b", timeout=120)
    assert len(ev_a) == len(ev_b) == deleted
    # One deletion at a time: the k-th event of each dataset is one consumer.
    xs = [pos_a[bytes(e.pseudonym)] for e in sorted(ev_a, key=lambda e: e.seq)]
    ys = [pos_b[bytes(e.pseudonym)] for e in sorted(ev_b, key=lambda e: e.seq)]
    tau, _ = kendalltau(xs, ys)
    print(f"Kendall tau over {deleted} consumers: {tau:.4f}")
    assert abs(tau) < 0.05, tau


def test_rare_tokens_counted_over_the_streams_rows(daemon):
    """Regression for issue 11.5: counts took every live consumer, so a value
    held by one row of the stream was released when five holders had opted
    out of the purpose."""
    k = spec(daemon, "training")["device"].k
    other = spec(daemon, "training")["device"].other_token
    for i in range(10):
        daemon.put(f"m{i}", device="mobile")
    for i in range(6):
        daemon.put(f"x{i}", device="other")
    for i in range(5):
        consent(daemon, f"x{i}", purpose="training", granted=False)
    got = rows(fetch(daemon, "training", attributes=["device"]))
    assert len(got) == 11
    toks = [t[0] for t in got.values()]
    for t in set(toks):
        assert t == other or toks.count(t) >= k, (t, toks.count(t))
    assert toks.count(other) == 1
    # The sale/share purpose holds all six again: "other" is released there.
    shared = rows(fetch(daemon, "ad_targeting_shared", attributes=["device"]))
    stoks = [t[0] for t in shared.values()]
    assert len(stoks) == 16 and len(set(stoks)) == 2
    assert spec(daemon, "ad_targeting_shared")["device"].other_token not in stoks


def test_resumed_stream_counts_only_its_own_rows(daemon):
    """Found by adversarial testing: a resumed stream counted the rows before
    its page token too, and released a value held by one of its own rows."""
    for i in range(20):
        daemon.put(f"k-m{i}", device="mobile")
    for i in range(10):
        daemon.put(f"k-t{i}", device="tv")
    full = fetch(daemon, "training", attributes=["device"], batch_size=1)
    toks = [b.rows[0].tokens[0] for b in full if b.rows]
    tv = [t for t in set(toks) if toks.count(t) == 10][0]
    # The token after the sixth tv row: four tv rows remain behind it.
    sixth = [i for i, t in enumerate(toks) if t == tv][5]
    rest = fetch(daemon, "training", attributes=["device"], batch_size=1000,
                 page_token=full[sixth].next_page_token)
    got = [r.tokens[0] for b in rest for r in b.rows]
    k = spec(daemon, "training")["device"].k
    other = spec(daemon, "training")["device"].other_token
    behind = toks[sixth + 1:]
    assert len(got) == len(behind)
    # Each value is counted over the resumed call's rows alone: tv has 4
    # there (< k), mobile however many of its rows come after the token.
    expected = {t: (other if behind.count(t) < k else t) for t in set(behind)}
    assert got == [expected[t] for t in behind]
    assert tv not in got


def test_each_rows_features_are_its_consumers(daemon):
    """A stream's rows and their tokens are put in stream order apart from
    the scan (fetch.c, order_rows, which moves both arrays in place): a row
    carrying another consumer's features would be a wrong dataset and a
    leak. Consumers deleted one at a time name their row's pseudonym in the
    dataset's deletion events; each one's row must hold its own value."""
    n = 3000

    def put(i):
        daemon.put(f"pair{i}", age=str(20 + i % 40),
                   converted="true" if i % 5 == 0 else "false")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))
    got = rows(fetch(daemon, "training", dataset="pair", attributes=["converted"],
                     batch_size=5000))
    assert len(got) == n
    victims = list(range(0, 300, 7))
    for i in victims:
        daemon.delete(f"pair{i}")
    events = sorted(watch(daemon, dataset_id="pair", timeout=120),
                    key=lambda e: e.seq)
    assert len(events) == len(victims)
    seen = {True: set(), False: set()}
    for e, i in zip(events, victims):
        seen[i % 5 == 0].add(got[bytes(e.pseudonym)][0])
    assert len(seen[True]) == 1 and len(seen[False]) == 1, seen
    assert seen[True] != seen[False]
