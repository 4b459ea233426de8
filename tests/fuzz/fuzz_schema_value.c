/*
 * Attribute values per schema type (conf/schema.h): the first byte chooses
 * an attribute of a fixed schema (every type, with and without bounds,
 * categories and each feature kind), the next two the day the value is
 * tokenized on; the rest is the value as PutAttributes hands it over (a C
 * string). A value that passes schema_check_value goes on to the tokenizer,
 * which parses it again for its feature (tokenize.h) and may rely on the
 * check; a consumer id check runs on every input too.
 */
#include <limits.h>
#include <string.h>

#include "conf/schema.h"
#include "engine/tokenize.h"
#include "fuzz_common.h"

static char *colours[] = { "red", "green", "blue", "n\xc3\xa4" };

static struct attr_def attrs[] = {
	{ .name = "note", .type = ATTR_STRING, .max_length = SCHEMA_VALUE_MAX },
	{ .name = "nick", .type = ATTR_STRING, .max_length = 16 },
	{ .name = "score", .type = ATTR_INT, .max_length = 32, .min = LLONG_MIN,
	  .max = LLONG_MAX, .feature = FEAT_BUCKET, .edges = { -10, 0, 10, 1000 },
	  .n_edges = 4 },
	{ .name = "age", .type = ATTR_INT, .max_length = 8, .min = -5, .max = 130 },
	{ .name = "born", .type = ATTR_DATE, .max_length = 10,
	  .feature = FEAT_YEAR },
	{ .name = "birthday", .type = ATTR_DATE, .max_length = 10,
	  .feature = FEAT_AGE_BAND, .edges = { 18, 30, 65 }, .n_edges = 3 },
	{ .name = "city", .type = ATTR_CATEGORY, .max_length = 64,
	  .feature = FEAT_CATEGORY, .k = 5 },
	{ .name = "colour", .type = ATTR_CATEGORY, .max_length = 64,
	  .values = colours, .n_values = 4, .feature = FEAT_CATEGORY, .k = 1 },
	{ .name = "member", .type = ATTR_BOOL, .max_length = 5,
	  .feature = FEAT_BOOL },
};
#define N_ATTRS (sizeof(attrs) / sizeof(attrs[0]))

static struct purpose_def purposes[] = { { .name = "analytics", .all_attrs = true } };
static struct schema schema = { attrs, N_ATTRS, purposes, 1 };
static struct tokenizer *tok;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct attr_def *a;
	int64_t today;
	char *v;
	size_t len;

	fuzz_init();
	if (tok == NULL) {
		uint8_t root[CRYPTO_KEY_BYTES];

		for (size_t i = 0; i < N_ATTRS; i++)
			purposes[0].allowed[i] = true;
		fuzz_key(root, sizeof(root), 17);
		if (tokenizer_new(&tok, &schema, root) != 0)
			abort();
	}
	if (size < 3 || size > SCHEMA_VALUE_MAX + 64)
		return 0;
	a = &attrs[data[0] % N_ATTRS];
	today = tokenize_days_from_civil(1970, 1, 1) +
	    ((int64_t)data[1] << 8 | data[2]);
	v = fuzz_strndup(data + 3, size - 3);
	len = strlen(v);	/* what a handler sees of a string field */
	(void)schema_check_consumer_id(v, len, 1024);
	if (schema_check_value(a, v, len) == NULL) {
		uint64_t t = tokenizer_token(tok, 0, (int)(a - attrs), v, len, today);

		if (a->feature == FEAT_BUCKET || a->feature == FEAT_AGE_BAND)
			FUZZ_CHECK(t >= 1 && t <= a->n_edges + 1);
		else if (a->feature == FEAT_BOOL)
			FUZZ_CHECK(t == 1 || t == 2);
		else if (a->feature == FEAT_CATEGORY)
			FUZZ_CHECK(t != 0);
		if (a->type == ATTR_DATE)
			FUZZ_CHECK(len == 10);
	}
	free(v);
	return 0;
}
