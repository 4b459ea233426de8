/*
 * The central request string check: NUL, invalid UTF-8 and over-long
 * strings are refused at any depth and named by field path; valid text,
 * bytes fields and unknown fields pass; malformed wire data stops cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/reqcheck.h"
#include "util/utf8.h"
#include "vault/v1/vault.pb-c.h"

static const struct reqcheck_limit limits[] = {
	{ "consumer_id", 16 }, { "value", 8 }, { NULL, 0 },
};
static const struct reqcheck_opts opts = { limits, 32 };

/* Appends a length-delimited field (tag, length < 128, bytes). */
static size_t
ld(uint8_t *out, unsigned field, const void *v, size_t n)
{
	out[0] = (uint8_t)(field << 3 | 2);
	out[1] = (uint8_t)n;
	memcpy(out + 2, v, n);
	return n + 2;
}

/* A PutAttributesRequest: consumer_id, then one attribute name=value. */
static size_t
put_req(uint8_t *buf, const char *id, size_t id_len, const char *value,
    size_t value_len)
{
	uint8_t attr[128];
	size_t a = 0, n = 0;

	a += ld(attr + a, 1, "zip", 3);
	a += ld(attr + a, 2, value, value_len);
	n += ld(buf + n, 1, id, id_len);
	n += ld(buf + n, 2, attr, a);
	return n;
}

static int
check(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n,
    char *msg)
{
	return reqcheck_message(d, b, n, &opts, msg, 128);
}

static void
test_nul_and_utf8_named(void **state)
{
	const ProtobufCMessageDescriptor *d =
	    &vault__v1__put_attributes_request__descriptor;
	uint8_t buf[256];
	char msg[128];
	size_t n;

	(void)state;
	n = put_req(buf, "alice", 5, "94105", 5);
	assert_int_equal(check(d, buf, n, msg), 0);

	n = put_req(buf, "alice\0x", 7, "94105", 5);
	assert_int_equal(check(d, buf, n, msg), VAULT_ERR_INVALID);
	assert_string_equal(msg, "consumer_id: contains a NUL character");

	n = put_req(buf, "alice", 5, "abc\0def", 7);
	assert_int_equal(check(d, buf, n, msg), VAULT_ERR_INVALID);
	assert_string_equal(msg, "attributes.value: contains a NUL character");

	n = put_req(buf, "al\xffice", 6, "1", 1);
	assert_int_equal(check(d, buf, n, msg), VAULT_ERR_INVALID);
	assert_string_equal(msg, "consumer_id: not valid UTF-8");

	n = put_req(buf, "alice", 5, "123456789", 9);
	assert_int_equal(check(d, buf, n, msg), VAULT_ERR_INVALID);
	assert_string_equal(msg, "attributes.value: too long");

	n = put_req(buf, "0123456789abcdefg", 17, "1", 1);
	assert_int_equal(check(d, buf, n, msg), VAULT_ERR_INVALID);
	assert_string_equal(msg, "consumer_id: too long");
}

static void
test_utf8_forms(void **state)
{
	(void)state;
	assert_true(utf8_valid((const uint8_t *)"caf\xc3\xa9", 5));
	assert_true(utf8_valid((const uint8_t *)"\xe2\x82\xac", 3));
	assert_true(utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4));
	assert_true(utf8_valid((const uint8_t *)"", 0));
	assert_false(utf8_valid((const uint8_t *)"\xc0\xaf", 2));	/* overlong */
	assert_false(utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));
	assert_false(utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));	/* surrogate */
	assert_false(utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));
	assert_false(utf8_valid((const uint8_t *)"\xc3", 1));	/* cut */
	assert_false(utf8_valid((const uint8_t *)"\x80", 1));
	assert_false(utf8_valid((const uint8_t *)"a\0", 2));
}

static void
test_prefix_cuts_between_characters(void **state)
{
	const char *s = "ab\xc3\xa9\xe2\x82\xac";	/* a b é € */

	(void)state;
	assert_int_equal(utf8_prefix(s, 7), 7);
	assert_int_equal(utf8_prefix(s, 6), 4);
	assert_int_equal(utf8_prefix(s, 5), 4);
	assert_int_equal(utf8_prefix(s, 4), 4);
	assert_int_equal(utf8_prefix(s, 3), 2);
	assert_int_equal(utf8_prefix(s, 0), 0);
}

static void
test_bytes_unknown_and_malformed(void **state)
{
	const ProtobufCMessageDescriptor *d =
	    &vault__v1__fetch_features_request__descriptor;
	uint8_t buf[64];
	char msg[128];
	size_t n = 0;

	(void)state;
	/* An unknown field 15 holding a NUL is not a string of ours. */
	n += ld(buf + n, 15, "a\0b", 3);
	n += ld(buf + n, 1, "training", 8);
	assert_int_equal(check(d, buf, n, msg), 0);
	/* A length running past the end. */
	buf[0] = 0x0a;
	buf[1] = 100;
	assert_int_equal(check(d, buf, 4, msg), VAULT_ERR_INVALID);
	/* A group wire type. */
	buf[0] = 0x0b;
	assert_int_equal(check(d, buf, 1, msg), VAULT_ERR_INVALID);
	/* A varint that never ends. */
	memset(buf, 0xff, 12);
	assert_int_equal(check(d, buf, 12, msg), VAULT_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nul_and_utf8_named),
		cmocka_unit_test(test_utf8_forms),
		cmocka_unit_test(test_prefix_cuts_between_characters),
		cmocka_unit_test(test_bytes_unknown_and_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
