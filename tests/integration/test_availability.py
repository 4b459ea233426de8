"""No principal can starve the daemon: streams waiting on slow clients hold
no shared worker and are capped per principal, unauthenticated streams have
their own small pool, anonymous denials are counted rather than logged one
by one, and oversized requests are refused without growing the process."""
import concurrent.futures
import os
import time

import grpc
import pytest

import rawh2
from conftest import health_pb, pb
from test_unlinkability import load


def configure(d, **settings):
    d.start()
    assert d.stop() == 0
    conf = d.data_dir / "vaultd.conf"
    conf.write_text(conf.read_text() + "\n" + "".join(
        f"{k} = {v};\n" for k, v in settings.items()))
    d.start()


def open_unread_streams(d, ch, n, token="dev"):
    """n FetchFeatures streams whose client never reads."""
    fn = ch.unary_stream("/vault.v1.Features/FetchFeatures",
                         request_serializer=lambda m: m.SerializeToString(),
                         response_deserializer=pb.FeatureBatch.FromString)
    return [fn(pb.FetchFeaturesRequest(purpose="training", dataset_id="slow",
                                       batch_size=1),
               metadata=d.metadata(token), timeout=120) for _ in range(n)]


def test_unread_streams_hold_no_worker(fresh):
    """Regression for issue 11.6: 32 unread streams took every worker and
    every unary call and health check timed out behind them."""
    configure(fresh, max_streams_per_principal=100, max_streams=100)
    load(fresh, 3000, "s")
    chans = [fresh.channel() for _ in range(40)]
    streams = [s for ch in chans for s in open_unread_streams(fresh, ch, 1)]
    time.sleep(3)      # every stream has filled its window and waits
    t0 = time.monotonic()
    assert fresh.get("s1", ["age"]) == {"age": "21"}
    assert fresh.health() == health_pb.HealthCheckResponse.SERVING
    print(f"unary call behind 40 unread streams: {time.monotonic() - t0:.3f} s")
    for s in streams:
        s.cancel()
    for ch in chans:
        ch.close()


def test_streams_capped_per_principal(fresh):
    configure(fresh, max_streams_per_principal=4)
    load(fresh, 3000, "p")
    # Without BDP probing the client's window stays at 64 KiB, less than
    # one stream's 3000 batches: no unread stream can finish and free its
    # slot (with probing the window could grow past a stream under load).
    ch = fresh.channel(options=[("grpc.http2.bdp_probe", 0)])
    streams = open_unread_streams(fresh, ch, 4)
    time.sleep(1)
    assert not any(s.done() for s in streams), [s.code() for s in streams if s.done()]
    with pytest.raises(grpc.RpcError) as e:
        list(open_unread_streams(fresh, ch, 1)[0])
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams_per_principal" in e.value.details()
    for s in streams:
        s.cancel()
    ch.close()
    # A cancelled stream gives its slot back once its worker sees the
    # cancellation (on PostgreSQL, after the snapshot it was taking).
    deadline = time.monotonic() + 30
    with fresh.channel() as ch2:
        while True:
            try:
                assert len(open_unread_streams(fresh, ch2, 1)[0].next().rows) == 1
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert time.monotonic() < deadline, "the slots never came back"
                time.sleep(0.2)


def test_public_streams_cannot_take_the_authenticated_slots(daemon):
    """Regression for issue 11.6: 64 health Watch streams made an
    authenticated WatchDeletions answer RESOURCE_EXHAUSTED."""
    ch = daemon.channel()
    watch = ch.unary_stream("/grpc.health.v1.Health/Watch",
                            request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=health_pb.HealthCheckResponse.FromString)
    calls = [watch(health_pb.HealthCheckRequest(), timeout=30) for _ in range(64)]
    codes = []
    for c in calls:
        try:
            c.next()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
    assert codes.count(grpc.StatusCode.OK) == 2          # per connection
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 62
    with daemon.channel() as ch2:
        w = ch2.unary_stream("/vault.v1.Deletion/WatchDeletions",
                             request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=pb.DeletionEvent.FromString)
        assert list(w(pb.WatchDeletionsRequest(purpose="training"),
                      metadata=daemon.metadata(), timeout=10)) == []
    for c in calls:
        c.cancel()
    ch.close()


def denial_entries(d):
    with d.channel() as ch:
        fn = ch.unary_stream("/vault.v1.Audit/QueryAudit",
                             request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=pb.AuditEntry.FromString)
        return [e for e in fn(pb.QueryAuditRequest(), metadata=d.metadata(),
                              timeout=30) if e.outcome == "unauthenticated"]


def test_anonymous_denials_are_counted_not_logged_one_by_one(fresh):
    """Regression for issue 11.7: each wrong-token call wrote an entry."""
    configure(fresh, auth_failures_per_peer=1000000)
    n = 3000
    with fresh.channel() as ch:
        fn = ch.unary_unary("/vault.v1.Consumers/GetAttributes",
                            request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=pb.GetAttributesResponse.FromString)
        req = pb.GetAttributesRequest(consumer_id="x", purpose="service")

        def bad(_):
            try:
                fn(req, metadata=[("authorization", "Bearer wrong")], timeout=10)
            except grpc.RpcError as e:
                return e.code()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(bad, range(n)))
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == n
    assert len(denial_entries(fresh)) == 1
    # The summary of the rest is written at the interval's end (or stop).
    assert fresh.stop() == 0
    fresh.start()
    entries = denial_entries(fresh)
    assert len(entries) == 2
    # The summary carries the count, so every denial stays accounted for.
    with fresh.channel() as ch:
        fn = ch.unary_stream("/vault.v1.Audit/QueryAudit",
                             request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=pb.AuditEntry.FromString)
        raw = [e for e in fn(pb.QueryAuditRequest(), metadata=fresh.metadata(),
                             timeout=30) if e.outcome == "unauthenticated"]
    assert len(raw) == 2
    assert f"{n - 1} more denials from ipv4:127.0.0.1" in str(raw[1]), raw[1]


def test_failed_authentications_are_limited_per_peer(daemon):
    with daemon.channel() as ch:
        codes = []
        gfn = ch.unary_unary("/vault.v1.Consumers/GetAttributes",
                             request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=pb.GetAttributesResponse.FromString)
        req = pb.GetAttributesRequest(consumer_id="x", purpose="service")
        for _ in range(30):
            try:
                gfn(req, metadata=[("authorization", "Bearer wrong")], timeout=5)
            except grpc.RpcError as e:
                codes.append(e.code())
    assert codes[:20] == [grpc.StatusCode.UNAUTHENTICATED] * 20
    assert codes[20:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 10
    # The same address with valid credentials is served.
    daemon.put("limited", age="40")
    assert daemon.get("limited") == {"age": "40"}


def peak_rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])


def test_oversized_requests_are_refused_without_buffering(daemon):
    """Regression for issue 11.8: 8 concurrent 64 MiB requests took the
    peak RSS from 27 to 217 MB."""
    before = peak_rss_kb(daemon.proc.pid)
    big = pb.PutAttributesRequest(consumer_id="big", attributes=[
        pb.Attribute(name="email", value="x" * (64 << 20))]).SerializeToString()

    def send(_):
        with daemon.channel() as ch:
            fn = ch.unary_unary("/vault.v1.Consumers/PutAttributes",
                                request_serializer=lambda b: b,
                                response_deserializer=pb.PutAttributesResponse.FromString)
            try:
                fn(big, metadata=daemon.metadata(), timeout=60)
            except grpc.RpcError as e:
                return e.code()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, range(8)))
    # Refused at the size limit, or cut off by the transport's quota.
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED,
                          grpc.StatusCode.UNAVAILABLE}, codes
    peak = peak_rss_kb(daemon.proc.pid)
    print(f"peak RSS: {before / 1024:.0f} MB before, {peak / 1024:.0f} MB after "
          "8 concurrent 64 MiB requests")
    # The transport's quota (transport_memory_mb, 64 by default) bounds it.
    # AddressSanitizer keeps freed memory in quarantine (256 MB): its RSS
    # says nothing about gRPC's buffering, so the bound is the normal build's.
    # Seen: +79 to +145 MB across runs (malloc's arenas per thread).
    if "ASAN_OPTIONS" not in os.environ:
        assert peak - before < 192 * 1024, (before, peak)
    assert daemon.health() == 1
    daemon.put("after-big", age="33")
    assert daemon.get("after-big") == {"age": "33"}


def test_half_open_calls_are_released(fresh):
    """Found by adversarial testing: calls whose headers came without their
    message were held for as long as the client kept its connection open,
    about 14 KB each (60,000 took 837 MB and kept it). Now anonymous ones
    past max_pending_requests(_per_peer) are reset at once and the rest
    cancelled after request_timeout_ms, so a second flood, with the first's
    connections still open, reuses the first one's memory."""
    configure(fresh, request_timeout_ms=1000)
    # Under ASan+UBSan, gRPC's threads reset and cancel what a flood leaves
    # many times slower (its allocator is ASan's): on a 2-core machine they
    # were still at it 3 + 10 s after the first flood (a put timed out in
    # CI, and with the build of the day before as well; half the flood
    # still failed). There: 3,000 calls a flood, still past both limits on
    # waiting calls (1024, 128 per peer), and three times the deadlines;
    # the memory bound is the normal build's alone anyway (below).
    asan = "ASAN_OPTIONS" in os.environ
    per_conn, slack = (250, 3) if asan else (2000, 1)

    def flood():
        socks = []
        for _ in range(12):
            s = rawh2.connect(fresh.port)
            s.sendall(b"".join(rawh2.headers(sid, b"/grpc.health.v1.Health/Check")
                               for sid in range(1, 2 * per_conn, 2)))
            socks.append(s)
        return socks
    before = peak_rss_kb(fresh.proc.pid)
    first = flood()
    time.sleep(3)
    # Authenticated calls from the same address are not held back.
    fresh.call("/vault.v1.Consumers/PutAttributes", pb.PutAttributesRequest(
        consumer_id="half-open", attributes=[pb.Attribute(name="age", value="41")]),
        pb.PutAttributesResponse, timeout=10 * slack)
    assert fresh.get("half-open") == {"age": "41"}
    after_first = peak_rss_kb(fresh.proc.pid)
    second = flood()
    time.sleep(3)
    after_second = peak_rss_kb(fresh.proc.pid)
    print(f"two floods of {12 * per_conn:,} header-only calls: peak RSS {before // 1024} -> "
          f"{after_first // 1024} -> {after_second // 1024} MB")
    # Before: the calls were held, and each flood added its own (13 -> 321
    # -> 628 MB). Now the second mostly reuses the first one's memory (seen
    # 14 -> 97..192 -> 145..192 MB): two floods stay under half the +615 MB.
    # ASan's quarantine keeps freed memory resident (477 -> 597 MB seen
    # there): the bound is the normal build's, as for oversized requests.
    if "ASAN_OPTIONS" not in os.environ:
        assert after_second - before < 320 * 1024, \
            (before, after_first, after_second)
    # A waiting call is cancelled once request_timeout_ms has passed.
    s = rawh2.connect(fresh.port)
    s.sendall(rawh2.headers(1, b"/grpc.health.v1.Health/Check"))
    frames = rawh2.read_frames(s, 5 * slack, until=lambda fs: rawh2.ended(fs, 1))
    assert rawh2.ended(frames, 1)
    for s in first + second + [s]:
        s.close()
    # Closed connections give their waiting calls back (as the daemon sees
    # the cancellations: seconds under ASan on a loaded machine); until
    # then this address may still be over its count of waiting calls.
    deadline = time.monotonic() + 30
    while True:
        try:
            assert fresh.health() == health_pb.HealthCheckResponse.SERVING
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
            assert time.monotonic() < deadline, "waiting calls never released"
            time.sleep(0.5)


def test_anonymous_bad_metadata_is_counted_not_logged(daemon):
    """Found by adversarial testing: an anonymous call with a header value
    the daemon refuses was audited one entry a call."""
    s = rawh2.connect(daemon.port)
    for i in range(100):
        sid = 2 * i + 1
        s.sendall(rawh2.headers(sid, b"/vault.v1.Keys/GetKeyStatus",
                                [(b"x-junk", b"a\xffb")]) + rawh2.message(sid, b""))
    frames = rawh2.read_frames(s, 10, until=lambda fs: rawh2.ended(fs, 199))
    assert rawh2.ended(frames, 199)
    s.close()
    with daemon.channel() as ch:
        fn = ch.unary_stream("/vault.v1.Audit/QueryAudit",
                             request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=pb.AuditEntry.FromString)
        anon = [e for e in fn(pb.QueryAuditRequest(), metadata=daemon.metadata(),
                              timeout=30) if e.principal == "-"]
    assert len(anon) == 1, anon


def test_one_host_cannot_take_every_public_stream(daemon):
    """Found by adversarial testing: the per-peer cap counted connections,
    so 8 connections of one host took all 16 health Watch slots."""
    chans = [daemon.channel() for _ in range(8)]
    ok = 0
    calls = []
    for ch in chans:
        watch = ch.unary_stream("/grpc.health.v1.Health/Watch",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=health_pb.HealthCheckResponse.FromString)
        for _ in range(2):
            c = watch(health_pb.HealthCheckRequest(), timeout=30)
            calls.append(c)
            try:
                c.next()
                ok += 1
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "max_public_streams_per_peer" in e.details()
    assert ok == 2
    for c in calls:
        c.cancel()
    for ch in chans:
        ch.close()
