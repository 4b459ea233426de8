#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conf/schema.h"

static const char *
check(const struct attr_def *d, const char *v)
{
	return schema_check_value(d, v, strlen(v));
}

static void
test_int(void **state)
{
	struct attr_def d = { .name = "age", .type = ATTR_INT, .max_length = 20, .sensitive = false, .min = 0, .max = 130 };

	(void)state;
	assert_null(check(&d, "0"));
	assert_null(check(&d, "130"));
	assert_non_null(check(&d, "131"));
	assert_non_null(check(&d, "-1"));
	assert_non_null(check(&d, ""));
	assert_non_null(check(&d, "12a"));
	assert_non_null(check(&d, " 12"));
	assert_non_null(check(&d, "+12"));
	assert_non_null(check(&d, "99999999999999999999999"));
}

static void
test_date(void **state)
{
	struct attr_def d = { .name = "last", .type = ATTR_DATE, .max_length = 10, .sensitive = false, .min = 0, .max = 0 };

	(void)state;
	assert_null(check(&d, "2024-02-29"));
	assert_non_null(check(&d, "2023-02-29"));
	assert_null(check(&d, "2000-02-29"));
	assert_non_null(check(&d, "1900-02-29"));
	assert_non_null(check(&d, "2024-13-01"));
	assert_non_null(check(&d, "2024-04-31"));
	assert_non_null(check(&d, "2024-4-1"));
	assert_non_null(check(&d, "20240401"));
	assert_non_null(check(&d, "0000-01-01"));
}

static void
test_bool_and_category(void **state)
{
	char *vals[] = { "mobile", "desktop" };
	struct attr_def b = { .name = "flag", .type = ATTR_BOOL, .max_length = 5, .sensitive = false, .min = 0, .max = 0 };
	struct attr_def c = { .name = "device", .type = ATTR_CATEGORY, .max_length = 16, .sensitive = false, .min = 0, .max = 0, .values = vals, .n_values = 2 };
	struct attr_def open_c = { .name = "eth", .type = ATTR_CATEGORY, .max_length = 8, .sensitive = true, .min = 0, .max = 0 };

	(void)state;
	assert_null(check(&b, "true"));
	assert_null(check(&b, "false"));
	assert_non_null(check(&b, "TRUE"));
	assert_non_null(check(&b, "1"));
	assert_null(check(&c, "mobile"));
	assert_non_null(check(&c, "mobil"));
	assert_non_null(check(&c, "mobile "));
	assert_non_null(check(&c, ""));
	assert_null(check(&open_c, "anything"));
	assert_non_null(check(&open_c, "too-long-x"));
}

static void
test_string_length_and_utf8(void **state)
{
	struct attr_def d = { .name = "zip", .type = ATTR_STRING, .max_length = 10, .sensitive = false, .min = 0, .max = 0 };

	(void)state;
	assert_null(check(&d, "94103"));
	assert_null(check(&d, "0123456789"));
	assert_non_null(check(&d, "01234567890"));
	assert_null(check(&d, "\xc3\xa9t\xc3\xa9"));		/* été */
	assert_non_null(check(&d, "\xc3"));			/* truncated */
	assert_non_null(check(&d, "\xc0\xaf"));			/* overlong */
	assert_non_null(check(&d, "\xed\xa0\x80"));		/* surrogate */
	assert_non_null(schema_check_value(&d, "a\0b", 3));	/* NUL */
}

static void
test_consumer_id(void **state)
{
	(void)state;
	assert_null(schema_check_consumer_id("alice@example.com", 17, 128));
	assert_non_null(schema_check_consumer_id("", 0, 128));
	assert_non_null(schema_check_consumer_id("abcd", 4, 3));
	assert_non_null(schema_check_consumer_id("a\nb", 3, 128));
	assert_non_null(schema_check_consumer_id("a\x7f", 2, 128));
	assert_non_null(schema_check_consumer_id("\xff", 1, 128));
}

static void
test_find(void **state)
{
	struct attr_def attrs[] = {
		{ .name = "email", .type = ATTR_STRING, .max_length = 10, .sensitive = false, .min = 0, .max = 0 },
		{ .name = "emailx", .type = ATTR_STRING, .max_length = 10, .sensitive = false, .min = 0, .max = 0 },
	};
	struct purpose_def p[] = { { .name = "service" } };
	struct schema s = { attrs, 2, p, 1 };

	(void)state;
	assert_int_equal(schema_find_attr(&s, "email", 5), 0);
	assert_int_equal(schema_find_attr(&s, "emailx", 6), 1);
	assert_int_equal(schema_find_attr(&s, "emai", 4), -1);
	assert_int_equal(schema_find_purpose(&s, "service", 7), 0);
	assert_int_equal(schema_find_purpose(&s, "servic", 6), -1);
	assert_int_equal(schema_type_parse("category"), ATTR_CATEGORY);
	assert_int_equal(schema_type_parse("float"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_date),
		cmocka_unit_test(test_bool_and_category),
		cmocka_unit_test(test_string_length_and_utf8),
		cmocka_unit_test(test_consumer_id),
		cmocka_unit_test(test_find),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
