/*
 * The call counters: a call lands in its method's slot, its status code
 * and the latency bucket whose bound it does not pass; methods outside
 * the table share the "unknown" slot; denials count by reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/stats.h"

static void
test_calls_and_buckets(void **state)
{
	struct rpc_stats *s;
	struct rpc_method_stats m;

	(void)state;
	assert_int_equal(rpc_stats_new(&s, 3), 0);
	rpc_stats_call(s, 1, 0, 400);		/* 0.4 ms: the first bucket */
	rpc_stats_call(s, 1, 0, 500);		/* exactly 0.5 ms: still the first */
	rpc_stats_call(s, 1, 16, 501);		/* past it: the second */
	rpc_stats_call(s, 1, 0, 60 * 1000000LL);	/* a minute: +Inf */
	rpc_stats_call(s, 99, 12, 10);		/* not in the table: unknown */
	rpc_stats_call(s, 3, 99, -5);		/* a bad code and clock */
	rpc_stats_read(s, 1, &m);
	assert_int_equal(m.calls[0], 3);
	assert_int_equal(m.calls[16], 1);
	assert_int_equal(m.latency[0], 2);
	assert_int_equal(m.latency[1], 1);
	assert_int_equal(m.latency[RPC_LATENCY_BUCKETS], 1);
	assert_int_equal(m.latency_sum_us, 400 + 500 + 501 + 60 * 1000000LL);
	rpc_stats_read(s, 3, &m);
	assert_int_equal(m.calls[12], 1);
	assert_int_equal(m.calls[2], 1);	/* UNKNOWN */
	assert_int_equal(m.latency[0], 2);
	rpc_stats_read(s, 0, &m);
	assert_int_equal(m.calls[0], 0);
	rpc_stats_free(s);
}

static void
test_bytes_and_denials(void **state)
{
	struct rpc_stats *s;
	struct rpc_method_stats m;

	(void)state;
	assert_int_equal(rpc_stats_new(&s, 2), 0);
	rpc_stats_bytes_in(s, 0, 100);
	rpc_stats_sent(s, 0, 30, 0);
	rpc_stats_sent(s, 0, 20, 1);
	rpc_stats_denied(s, RPC_DENY_ROLE);
	rpc_stats_denied(s, RPC_DENY_ROLE);
	rpc_stats_denied(s, RPC_DENY_N);	/* ignored */
	rpc_stats_read(s, 0, &m);
	assert_int_equal(m.bytes_in, 100);
	assert_int_equal(m.bytes_out, 50);
	assert_int_equal(m.msgs_sent, 1);
	assert_int_equal(rpc_stats_denials(s, RPC_DENY_ROLE), 2);
	assert_int_equal(rpc_stats_denials(s, RPC_DENY_BUSY), 0);
	assert_string_equal(rpc_deny_name(RPC_DENY_MISSING_CREDENTIALS),
	    "missing_credentials");
	assert_string_equal(rpc_status_name(16), "UNAUTHENTICATED");
	assert_string_equal(rpc_status_name(17), "UNKNOWN");
	rpc_stats_free(s);
	rpc_stats_call(NULL, 0, 0, 1);		/* no counters: nothing */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calls_and_buckets),
		cmocka_unit_test(test_bytes_and_denials),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
