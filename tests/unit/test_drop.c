/*
 * DROP standardization and hashing (engine/drop.h) against the examples
 * and test vectors of CalPrivacy's DROP specification (docs/research/
 * drop.md: S5 is the DROP Data Broker API 1.2.0, S6 its worked examples).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "engine/drop.h"

static void
std_is(enum drop_field f, const char *in, const char *want)
{
	char out[DROP_STD_MAX];
	size_t n;

	assert_true(drop_standardize(f, in, strlen(in), out, &n));
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void
std_fails(enum drop_field f, const char *in)
{
	char out[DROP_STD_MAX];
	size_t n;

	assert_false(drop_standardize(f, in, strlen(in), out, &n));
}

/* The specification's examples, field by field (S6). */
static void
test_standardization_examples(void **state)
{
	(void)state;
	std_is(DROP_F_EMAIL, " Anna.Smith@Domain.com ", "anna.smith@domain.com");
	std_is(DROP_F_EMAIL, "a.b+tag@x.io", "a.b+tag@x.io");	/* dots, plus kept */
	std_is(DROP_F_PHONE, "+1(415)555-9317", "4155559317");
	std_is(DROP_F_PHONE, "555-9317", "5559317");	/* fewer than 10: all */
	std_is(DROP_F_DOB, "1776-07-04", "17760704");
	std_is(DROP_F_ZIP, "91790-3771", "91790");
	std_is(DROP_F_ZIP, "M1B 1A1", "m1b1a");
	std_is(DROP_F_ZIP, "00712345", "71234");
	std_is(DROP_F_ZIP, "02139-1234", "2139");	/* +4 goes first */
	std_is(DROP_F_FIRST_NAME, "Juan Pablo", "juanpablo");
	std_is(DROP_F_LAST_NAME, "O'Brien-Núñez", "obriennunez");
	std_is(DROP_F_LAST_NAME, "Straße", "strasse");
	std_is(DROP_F_MAID, "a3f1c2d4-5678-90ab-cdef-1234567890ab",
	    "a3f1c2d4567890abcdef1234567890ab");
	std_is(DROP_F_VIN, "1HGCM82633A004352", "1hgcm82633a004352");
	std_is(DROP_F_CTV_ID, "SmartTV_9F8E7D6C", "smarttv9f8e7d6c");
}

static void
test_values_without_a_standard_form(void **state)
{
	(void)state;
	std_fails(DROP_F_MAID, "a3f1c2d4-5678");		/* not 32 hex digits */
	std_fails(DROP_F_VIN, "1HGCM8263");			/* not 17 */
	std_fails(DROP_F_CTV_ID, "tv-1");			/* fewer than 8 */
	std_fails(DROP_F_DOB, "1776-7-4");			/* not YYYYMMDD */
	std_fails(DROP_F_FIRST_NAME, "Ελένη");		/* not folded yet */
	std_fails(DROP_F_FIRST_NAME, "--");			/* nothing left */
	std_fails(DROP_F_EMAIL, "   ");
	std_fails(DROP_F_NONE, "x");
}

static void
hash_is(enum drop_list l, const char *const v[DROP_FIELDS], const char *want)
{
	size_t lens[DROP_FIELDS] = { 0 };
	uint8_t h[DROP_HASH_BYTES], back[DROP_HASH_BYTES];
	char b64[DROP_B64_BYTES];

	for (int f = 0; f < DROP_FIELDS; f++)
		lens[f] = v[f] != NULL ? strlen(v[f]) : 0;
	assert_true(drop_hash(l, v, lens, h));
	drop_b64(h, b64);
	assert_string_equal(b64, want);
	assert_true(drop_unb64(b64, strlen(b64), back));
	assert_memory_equal(back, h, sizeof(h));
}

/* The composite vectors (S5 NDZ, S6 NameVIN), and a single field's hash. */
static void
test_hash_vectors(void **state)
{
	const char *ndz[DROP_FIELDS] = { [DROP_F_FIRST_NAME] = "Danielle",
	    [DROP_F_LAST_NAME] = "Johnson", [DROP_F_DOB] = "1985-07-04",
	    [DROP_F_ZIP] = "91790" };
	const char *vin[DROP_FIELDS] = { [DROP_F_FIRST_NAME] = "Eve",
	    [DROP_F_LAST_NAME] = "Genesis", [DROP_F_VIN] = "1HGCM82633A004352" };
	const char *email[DROP_FIELDS] = { [DROP_F_EMAIL] = "Anna.Smith@Domain.com" };
	size_t lens[DROP_FIELDS] = { 0 };
	uint8_t h[DROP_HASH_BYTES];

	(void)state;
	hash_is(DROP_LIST_NDZ, ndz, "PQOfn1RffEKmqMmNAzDKKaoZCwxWbQZkQzPWmQo9REA=");
	hash_is(DROP_LIST_NAMEVIN, vin,
	    "rtnDuXIe63jXYQQXW5r07GJ7lSsrib8+46QuKFwkOmk=");
	/* SHA-256("anna.smith@domain.com"), standard padded Base64. */
	hash_is(DROP_LIST_EMAIL, email,
	    "KA18MT/ph6IHYjzT9zwETySDQyvSh87YuoSBpOQtkhE=");
	/* A composite with a field missing has no hash. */
	ndz[DROP_F_ZIP] = NULL;
	assert_false(drop_hash(DROP_LIST_NDZ, ndz, lens, h));
}

static void
test_list_names_and_base64(void **state)
{
	uint8_t h[DROP_HASH_BYTES];

	(void)state;
	assert_int_equal(drop_list_parse("email"), DROP_LIST_EMAIL);
	assert_int_equal(drop_list_parse("NameVIN"), DROP_LIST_NAMEVIN);
	assert_int_equal(drop_list_parse("SSN"), -1);
	assert_int_equal(schema_drop_field_parse("ctv_id"), DROP_F_CTV_ID);
	assert_int_equal(schema_drop_field_parse("ssn"), DROP_F_NONE);
	/* URL-safe, unpadded, short or long: refused. */
	assert_false(drop_unb64("PQOfn1RffEKmqMmNAzDKKaoZCwxWbQZkQzPWmQo9REA", 43,
	    h));
	assert_false(drop_unb64("PQOfn1RffEKmqMmNAzDKKaoZCwxWbQZkQzPWmQo9RE_=", 44,
	    h));
	assert_false(drop_unb64("", 0, h));
}

/* The keyed form depends on the key and the list: no bare hash is stored. */
static void
test_keyed_form(void **state)
{
	uint8_t k1[32] = { 1 }, k2[32] = { 2 }, h[DROP_HASH_BYTES] = { 7 };
	uint8_t a[DROP_KEYED_BYTES], b[DROP_KEYED_BYTES], c[DROP_KEYED_BYTES];

	(void)state;
	drop_keyed(k1, DROP_LIST_EMAIL, h, a);
	drop_keyed(k2, DROP_LIST_EMAIL, h, b);
	drop_keyed(k1, DROP_LIST_PHONE, h, c);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	assert_memory_not_equal(a, h, sizeof(a));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_standardization_examples),
		cmocka_unit_test(test_values_without_a_standard_form),
		cmocka_unit_test(test_hash_vectors),
		cmocka_unit_test(test_list_names_and_base64),
		cmocka_unit_test(test_keyed_form),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
