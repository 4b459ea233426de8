/* "Did you mean" (daemon/util/suggest.c) and vaultctl's time arguments
 * (client/timearg.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/suggest.h"
#include "vaultctl.h"

static void
test_distance(void **state)
{
	(void)state;
	assert_int_equal(suggest_distance("", ""), 0);
	assert_int_equal(suggest_distance("health", "health"), 0);
	assert_int_equal(suggest_distance("halth", "health"), 1);
	assert_int_equal(suggest_distance("ehalth", "health"), 1);	/* swap */
	assert_int_equal(suggest_distance("kitten", "sitting"), 3);
	assert_int_equal(suggest_distance("", "abc"), 3);
}

static void
test_closest(void **state)
{
	static const char *const cmds[] = { "health", "put", "get", "delete",
	    "keys", "audit" };
	static const char *const purposes[] = { "service", "training", "research" };

	(void)state;
	assert_string_equal(suggest_closest("halth", cmds, 6), "health");
	assert_string_equal(suggest_closest("gte", cmds, 6), "get");
	assert_string_equal(suggest_closest("delet", cmds, 6), "delete");
	assert_null(suggest_closest("frobnicate", cmds, 6));
	assert_null(suggest_closest("xyz", cmds, 6));
	assert_string_equal(suggest_closest("servce", purposes, 3), "service");
	assert_null(suggest_closest("marketing", purposes, 3));
	assert_null(suggest_closest("a", cmds, 0));
}

static void
test_list(void **state)
{
	static const char *const names[] = { "email", "zip", "age" };
	char buf[64], small[14];

	(void)state;
	assert_string_equal(suggest_list(buf, sizeof(buf), names, 3),
	    "email, zip, age");
	assert_string_equal(suggest_list(small, sizeof(small), names, 3),
	    "email, ...");
	assert_true(strlen(small) < sizeof(small));
	assert_string_equal(suggest_list(buf, sizeof(buf), names, 0), "");
}

static void
test_times(void **state)
{
	const int64_t now = 1796205103905;	/* 2026-12-02T09:51:43.905Z */
	static const char *const bad[] = { "", "2026-12-1", "2026-13-01",
	    "2026-02-30", "2026-02-29", "2026-12-01T24:00Z", "2026-12-01T10:00",
	    "2026-12-01T10:00:00", "2026-12-01T10:00:00+2", "2026-12-01T10:60Z",
	    "2026-12-01T10:00:00.Z", "2026-12-01T10:00:00+24:00", "yesterday",
	    "24x", "h", "-5m", "5mm", "1969-12-31", "2026-12-01Tx", NULL };
	int64_t ms;

	(void)state;
	assert_int_equal(ctl_parse_time("2026-12-01", now, &ms), 0);
	assert_int_equal(ms, 1796083200000);
	assert_int_equal(ctl_parse_time("2026-12-01T10:00:00Z", now, &ms), 0);
	assert_int_equal(ms, 1796083200000 + 36000000);
	assert_int_equal(ctl_parse_time("2026-12-01t10:00z", now, &ms), 0);
	assert_int_equal(ms, 1796083200000 + 36000000);
	assert_int_equal(ctl_parse_time("2026-12-01T12:00:00+02:00", now, &ms), 0);
	assert_int_equal(ms, 1796083200000 + 36000000);
	assert_int_equal(ctl_parse_time("2026-12-01T04:30:00.250-05:30", now, &ms), 0);
	assert_int_equal(ms, 1796083200000 + 36000000 + 250);
	assert_int_equal(ctl_parse_time("2026-12-01 10:00:00.1234Z", now, &ms), 0);
	assert_int_equal(ms, 1796083200000 + 36000000 + 123);
	assert_int_equal(ctl_parse_time("2028-02-29", now, &ms), 0);
	assert_int_equal(ctl_parse_time("24h", now, &ms), 0);
	assert_int_equal(ms, now - 86400000);
	assert_int_equal(ctl_parse_time("30m", now, &ms), 0);
	assert_int_equal(ms, now - 1800000);
	assert_int_equal(ctl_parse_time("7d", now, &ms), 0);
	assert_int_equal(ms, now - 7 * 86400000LL);
	assert_int_equal(ctl_parse_time("1796083200000", now, &ms), 0);
	assert_int_equal(ms, 1796083200000);
	for (size_t i = 0; bad[i] != NULL; i++)
		if (ctl_parse_time(bad[i], now, &ms) == 0)
			fail_msg("'%s' was taken as a time", bad[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_distance),
		cmocka_unit_test(test_closest),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_times),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
