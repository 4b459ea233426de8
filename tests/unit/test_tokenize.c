#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/crypto.h"
#include "engine/tokenize.h"

static struct attr_def attrs[] = {
	{ .name = "age", .type = ATTR_INT, .max_length = 3, .feature = FEAT_BUCKET,
	  .edges = { 18, 25, 35 }, .n_edges = 3 },
	{ .name = "device", .type = ATTR_CATEGORY, .max_length = 16,
	  .feature = FEAT_CATEGORY, .k = 5 },
	{ .name = "born", .type = ATTR_DATE, .max_length = 10,
	  .feature = FEAT_AGE_BAND, .edges = { 18, 30 }, .n_edges = 2 },
	{ .name = "last", .type = ATTR_DATE, .max_length = 10, .feature = FEAT_YEAR },
	{ .name = "flag", .type = ATTR_BOOL, .max_length = 5, .feature = FEAT_BOOL },
};
static struct purpose_def purposes[] = { { .name = "training" }, { .name = "ads" } };
static struct schema schema = { attrs, 5, purposes, 2 };
static struct tokenizer *tok;
static uint8_t root[CRYPTO_KEY_BYTES];

static int
setup(void **state)
{
	(void)state;
	assert_int_equal(crypto_init(), 0);
	memset(root, 0x42, sizeof(root));
	return tokenizer_new(&tok, &schema, root);
}

static int
teardown(void **state)
{
	(void)state;
	tokenizer_free(tok);
	return 0;
}

static uint64_t
t(int purpose, int attr, const char *v, int64_t today)
{
	return tokenizer_token(tok, purpose, attr, v, strlen(v), today);
}

static void
test_buckets_bool_year(void **state)
{
	(void)state;
	assert_int_equal(t(0, 0, "0", 0), 1);
	assert_int_equal(t(0, 0, "17", 0), 1);
	assert_int_equal(t(0, 0, "18", 0), 2);
	assert_int_equal(t(0, 0, "24", 0), 2);
	assert_int_equal(t(0, 0, "25", 0), 3);
	assert_int_equal(t(0, 0, "130", 0), 4);
	assert_int_equal(t(0, 4, "false", 0), 1);
	assert_int_equal(t(0, 4, "true", 0), 2);
	assert_int_equal(t(0, 3, "2024-02-29", 0), 2024);
}

static void
test_age_band_counts_whole_years(void **state)
{
	int64_t today = tokenize_days_from_civil(2026, 11, 29);

	(void)state;
	assert_int_equal(tokenize_days_from_civil(1970, 1, 1), 0);
	assert_int_equal(tokenize_days_from_civil(2000, 3, 1), 11017);
	assert_int_equal(t(0, 2, "2008-11-29", today), 2);	/* 18 today */
	assert_int_equal(t(0, 2, "2008-11-30", today), 1);	/* 17 until tomorrow */
	assert_int_equal(t(0, 2, "1996-11-29", today), 3);	/* 30 */
	assert_int_equal(t(0, 2, "1996-12-01", today), 2);	/* 29 */
}

static void
test_category_tokens(void **state)
{
	uint64_t m0 = t(0, 1, "mobile", 0), m1 = t(1, 1, "mobile", 0);
	uint8_t k1[TOKEN_COUNT_KEY_MAX], k2[TOKEN_COUNT_KEY_MAX];
	size_t n1, n2;

	(void)state;
	assert_int_equal(m0, t(0, 1, "mobile", 0));		/* stable */
	assert_int_not_equal(m0, t(0, 1, "desktop", 0));
	assert_int_not_equal(m0, m1);				/* per purpose */
	assert_int_not_equal(m0, tokenizer_other(tok, 0, 1));
	assert_int_not_equal(tokenizer_other(tok, 0, 1), tokenizer_other(tok, 1, 1));
	assert_true(m0 != 0 && m0 <= INT64_MAX);
	/* The count key is per value, not per purpose, and holds no plaintext. */
	n1 = tokenizer_count_key(tok, 1, "mobile", 6, k1);
	n2 = tokenizer_count_key(tok, 1, "mobile", 6, k2);
	assert_int_equal(n1, n2);
	assert_memory_equal(k1, k2, n1);
	assert_memory_equal(k1, "device\0", 7);
	assert_null(memmem(k1, n1, "mobile", 6));
	n2 = tokenizer_count_key(tok, 1, "tv", 2, k2);
	assert_true(memcmp(k1, k2, n1) != 0);
}

static void
test_pseudonyms(void **state)
{
	uint8_t seed[CRYPTO_KEY_BYTES], a[TOKEN_PSEUDONYM_BYTES],
	    b[TOKEN_PSEUDONYM_BYTES], c[TOKEN_PSEUDONYM_BYTES];

	(void)state;
	memset(seed, 1, sizeof(seed));
	tokenizer_pseudonym(seed, "training", a);
	tokenizer_pseudonym(seed, "training", b);
	tokenizer_pseudonym(seed, "ads", c);
	assert_memory_equal(a, b, sizeof(a));
	assert_true(memcmp(a, c, sizeof(a)) != 0);
	seed[0] = 2;
	tokenizer_pseudonym(seed, "training", b);
	assert_true(memcmp(a, b, sizeof(a)) != 0);
}

static void
test_tokens_depend_on_the_root_key(void **state)
{
	struct tokenizer *other = NULL;
	uint8_t root2[CRYPTO_KEY_BYTES];

	(void)state;
	memset(root2, 0x43, sizeof(root2));
	assert_int_equal(tokenizer_new(&other, &schema, root2), 0);
	assert_int_not_equal(t(0, 1, "mobile", 0),
	    tokenizer_token(other, 0, 1, "mobile", 6, 0));
	tokenizer_free(other);
}

/* BLAKE2b-64 of msg under BLAKE2b-256(root, label), big-endian. */
static uint64_t
keyed64(const char *label, const uint8_t *msg, size_t len)
{
	uint8_t key[CRYPTO_KEY_BYTES], h[8];
	uint64_t v = 0;

	crypto_generichash(key, sizeof(key), (const uint8_t *)label,
	    strlen(label), root, sizeof(root));
	crypto_generichash(h, sizeof(h), msg, len, key, sizeof(key));
	for (int i = 0; i < 8; i++)
		v = v << 8 | h[i];
	return v;
}

/*
 * Stream positions by purpose name, configured or not (a dataset outlives
 * its purpose), and lineage tags keyed per dataset.
 */
static void
test_order_and_lineage_tag(void **state)
{
	uint8_t ref[CRYPTO_REF_BYTES], msg[4 + CRYPTO_REF_BYTES] = { 0, 0, 1, 2 };
	uint64_t order;

	(void)state;
	memset(ref, 7, sizeof(ref));
	assert_int_equal(tokenizer_order_named(tok, root, "ads", 3, ref,
	    &order), 0);
	assert_true(order == tokenizer_order(tok, 1, ref));
	assert_true(order == keyed64("order|ads", ref, sizeof(ref)));
	assert_int_equal(tokenizer_order_named(tok, root, "retired", 7, ref,
	    &order), 0);
	assert_true(order == keyed64("order|retired", ref, sizeof(ref)));
	assert_int_equal(tokenizer_order_named(tok, root, "", 0, ref, &order),
	    VAULT_ERR_INVALID);

	memcpy(msg + 4, ref, sizeof(ref));
	assert_true(tokenizer_lineage_tag(tok, 0x102, ref) ==
	    keyed64("lineage-tag", msg, sizeof(msg)));
	assert_true(tokenizer_lineage_tag(tok, 0x102, ref) !=
	    tokenizer_lineage_tag(tok, 0x103, ref));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_bool_year),
		cmocka_unit_test(test_age_band_counts_whole_years),
		cmocka_unit_test(test_category_tokens),
		cmocka_unit_test(test_pseudonyms),
		cmocka_unit_test(test_tokens_depend_on_the_root_key),
		cmocka_unit_test(test_order_and_lineage_tag),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
