/*
 * Anonymous denial accounting: the first denial of a peer and reason in an
 * interval is audited, the rest counted into one summary; a peer past its
 * limit a minute is refused; memory stays bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/denial.h"

struct sums {
	int calls;
	uint64_t total;
	char peer[DENIAL_PEER_MAX];
};

static void
collect(void *arg, const char *peer, const char *reason, const char *method,
    uint64_t count, int64_t since_ms)
{
	struct sums *s = arg;

	(void)reason;
	(void)method;
	(void)since_ms;
	s->calls++;
	s->total += count;
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
}

static void
test_first_audited_rest_summarised(void **state)
{
	struct denials *d;
	struct sums s = { 0 };
	int audited = 0, counted = 0;

	(void)state;
	assert_int_equal(denials_new(&d, 60, 1000000), 0);
	for (int i = 0; i < 100000; i++) {
		char peer[64];

		snprintf(peer, sizeof(peer), "ipv4:10.0.0.1:%d", 1000 + i % 50000);
		switch (denials_note(d, peer, "invalid credentials", "/m", 1000 + i / 100)) {
		case DENIAL_AUDIT: audited++; break;
		case DENIAL_COUNTED: counted++; break;
		case DENIAL_LIMITED: fail();
		}
	}
	/* One peer (the port does not matter): one entry now, the rest counted. */
	assert_int_equal(audited, 1);
	assert_int_equal(counted, 99999);
	denials_flush(d, 2000, false, collect, &s);	/* interval not over */
	assert_int_equal(s.calls, 0);
	denials_flush(d, 61000, false, collect, &s);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.total, 99999);
	assert_string_equal(s.peer, "ipv4:10.0.0.1");
	/* A new interval: audited afresh. */
	assert_int_equal(denials_note(d, "ipv4:10.0.0.1:9", "invalid credentials",
	    "/m", 61500), DENIAL_AUDIT);
	/* Another reason is another key. */
	assert_int_equal(denials_note(d, "ipv4:10.0.0.1:9", "missing credentials",
	    "/m", 61500), DENIAL_AUDIT);
	denials_free(d);
}

static void
test_limit_per_minute(void **state)
{
	struct denials *d;
	struct sums s = { 0 };

	(void)state;
	assert_int_equal(denials_new(&d, 60, 3), 0);
	assert_int_equal(denials_note(d, "ipv6:[::1]:1", "r", "/m", 0), DENIAL_AUDIT);
	assert_int_equal(denials_note(d, "ipv6:[::1]:2", "r", "/m", 1), DENIAL_COUNTED);
	assert_int_equal(denials_note(d, "ipv6:[::1]:3", "r", "/m", 2), DENIAL_COUNTED);
	assert_int_equal(denials_note(d, "ipv6:[::1]:4", "r", "/m", 3), DENIAL_LIMITED);
	/* Other reasons share the peer's limit; another peer does not. */
	assert_int_equal(denials_note(d, "ipv6:[::1]:4", "other", "/m", 3), DENIAL_LIMITED);
	assert_int_equal(denials_note(d, "ipv4:1.2.3.4:4", "r", "/m", 3), DENIAL_AUDIT);
	/* A minute later the peer may fail again. */
	assert_int_equal(denials_note(d, "ipv6:[::1]:5", "r", "/m", 60003), DENIAL_COUNTED);
	/* Limited calls are counted in the summary too. */
	denials_flush(d, 0, true, collect, &s);
	assert_int_equal(s.total, 5);
	denials_free(d);
}

static void
test_bounded_keys(void **state)
{
	struct denials *d;
	struct sums s = { 0 };
	char peer[64];

	(void)state;
	assert_int_equal(denials_new(&d, 60, 1000), 0);
	for (int i = 0; i < DENIAL_MAX_PEERS + 500; i++) {
		snprintf(peer, sizeof(peer), "ipv4:10.%d.%d.%d:1", i >> 16 & 255,
		    i >> 8 & 255, i & 255);
		(void)denials_note(d, peer, "r", "/m", 0);
		(void)denials_note(d, peer, "r", "/m", 0);
	}
	denials_flush(d, 0, true, collect, &s);
	/* Each tracked peer: one audited, one counted; past the bound, one
	 * "other peers" key takes the rest (its first audited). */
	assert_int_equal(s.calls, DENIAL_MAX_PEERS + 1);
	assert_int_equal(s.total, DENIAL_MAX_PEERS + 1000 - 1);
	/* Quiet keys are forgotten after an interval and a minute. */
	s = (struct sums){ 0 };
	denials_flush(d, 120000, false, collect, &s);
	assert_int_equal(s.calls, 0);
	assert_int_equal(denials_note(d, "ipv4:10.0.0.1:1", "r", "/m", 120001),
	    DENIAL_AUDIT);
	denials_free(d);
}

static void
test_peer_address(void **state)
{
	char out[DENIAL_PEER_MAX];

	(void)state;
	denials_peer_address("ipv4:127.0.0.1:50051", out);
	assert_string_equal(out, "ipv4:127.0.0.1");
	/* One host holds a /64: its addresses are one peer. */
	denials_peer_address("ipv6:[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", out);
	assert_string_equal(out, "ipv6:[2001:db8:1:2::]/64");
	denials_peer_address("ipv6:[::1]:443", out);
	assert_string_equal(out, "ipv6:[::]/64");
	denials_peer_address("unix:/run/vault.sock", out);
	assert_string_equal(out, "unix:/run/vault.sock");
	denials_peer_address(NULL, out);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_audited_rest_summarised),
		cmocka_unit_test(test_limit_per_minute),
		cmocka_unit_test(test_bounded_keys),
		cmocka_unit_test(test_peer_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
