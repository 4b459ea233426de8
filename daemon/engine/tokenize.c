#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"
#include "engine/tokenize.h"

#define OTHER_INPUT "\0OTHER"

struct tokenizer {
	const struct schema *s;
	uint8_t *keys;		/* locked: count keys, then token keys */
	uint8_t *order_keys;	/* locked: one per purpose */
	uint8_t *page_key;	/* locked */
	uint8_t *lineage_key;	/* locked */
	uint64_t *other;	/* [purpose][attr] */
};

static uint8_t *
count_key(const struct tokenizer *t, int attr)
{
	return t->keys + (size_t)attr * CRYPTO_KEY_BYTES;
}

static uint8_t *
token_key(const struct tokenizer *t, int purpose, int attr)
{
	return t->keys + (t->s->n_attrs * (1 + (size_t)purpose) + (size_t)attr) *
	    CRYPTO_KEY_BYTES;
}

static uint64_t
hash64(const uint8_t *key, const void *msg, size_t len)
{
	uint8_t h[8];
	uint64_t v = 0;

	crypto_generichash(h, sizeof(h), msg, len, key, CRYPTO_KEY_BYTES);
	for (int i = 7; i >= 0; i--)
		v = v << 8 | h[i];
	/* 63 bits: a token fits a signed 64-bit integer in JSON, Java, Parquet. */
	return v & INT64_MAX;
}

static void
derive(const uint8_t *root, const char *label, uint8_t *out)
{
	crypto_generichash(out, CRYPTO_KEY_BYTES, (const uint8_t *)label,
	    strlen(label), root, CRYPTO_KEY_BYTES);
}

int
tokenizer_new(struct tokenizer **out, const struct schema *s,
    const uint8_t *root)
{
	struct tokenizer *t;
	char label[3 * SCHEMA_NAME_MAX];
	size_t n_keys = s->n_attrs * (1 + s->n_purposes);

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return VAULT_ERR_NOMEM;
	t->s = s;
	t->keys = crypto_secret_alloc(n_keys * CRYPTO_KEY_BYTES);
	t->order_keys = crypto_secret_alloc(s->n_purposes * CRYPTO_KEY_BYTES);
	t->page_key = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	t->lineage_key = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	t->other = calloc(s->n_attrs * s->n_purposes, sizeof(uint64_t));
	if (t->keys == NULL || t->other == NULL || t->order_keys == NULL ||
	    t->page_key == NULL || t->lineage_key == NULL) {
		tokenizer_free(t);
		return VAULT_ERR_NOMEM;
	}
	for (size_t a = 0; a < s->n_attrs; a++) {
		snprintf(label, sizeof(label), "count|%s", s->attrs[a].name);
		derive(root, label, count_key(t, (int)a));
		for (size_t p = 0; p < s->n_purposes; p++) {
			snprintf(label, sizeof(label), "token|%s|%s",
			    s->purposes[p].name, s->attrs[a].name);
			derive(root, label, token_key(t, (int)p, (int)a));
			t->other[p * s->n_attrs + a] = hash64(token_key(t, (int)p,
			    (int)a), OTHER_INPUT, sizeof(OTHER_INPUT) - 1);
		}
	}
	for (size_t p = 0; p < s->n_purposes; p++) {
		snprintf(label, sizeof(label), "order|%s", s->purposes[p].name);
		derive(root, label, t->order_keys + p * CRYPTO_KEY_BYTES);
	}
	derive(root, "page-token", t->page_key);
	derive(root, "lineage-tag", t->lineage_key);
	sodium_memzero(label, sizeof(label));
	*out = t;
	return 0;
}

void
tokenizer_free(struct tokenizer *t)
{
	if (t == NULL)
		return;
	crypto_secret_free(t->keys);
	crypto_secret_free(t->order_keys);
	crypto_secret_free(t->page_key);
	crypto_secret_free(t->lineage_key);
	free(t->other);
	free(t);
}

size_t
tokenizer_count_key(const struct tokenizer *t, int attr, const char *value,
    size_t len, uint8_t out[TOKEN_COUNT_KEY_MAX])
{
	const char *name = t->s->attrs[attr].name;
	size_t n = strlen(name);

	memcpy(out, name, n);
	out[n] = 0;
	crypto_generichash(out + n + 1, TOKEN_COUNT_HASH_BYTES,
	    (const uint8_t *)value, len, count_key(t, attr), CRYPTO_KEY_BYTES);
	return n + 1 + TOKEN_COUNT_HASH_BYTES;
}

uint64_t
tokenizer_other(const struct tokenizer *t, int purpose, int attr)
{
	return t->other[(size_t)purpose * t->s->n_attrs + (size_t)attr];
}

int64_t
tokenize_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	/* Howard Hinnant's days_from_civil. */
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static uint64_t
bucket(const struct attr_def *a, int64_t v)
{
	uint64_t i = 0;

	while (i < a->n_edges && a->edges[i] <= v)
		i++;
	return i + 1;
}

uint64_t
tokenizer_token(const struct tokenizer *t, int purpose, int attr,
    const char *value, size_t len, int64_t today_days)
{
	const struct attr_def *a = &t->s->attrs[attr];
	int64_t y, ty;
	unsigned m, d, tm, td;
	uint64_t h;

	switch (a->feature) {
	case FEAT_CATEGORY:
		h = hash64(token_key(t, purpose, attr), value, len);
		return h == 0 ? 1 : h;
	case FEAT_BUCKET:
		return bucket(a, strtoll(value, NULL, 10));
	case FEAT_BOOL:
		return len == 4 ? 2 : 1;
	case FEAT_YEAR:
	case FEAT_AGE_BAND:
		y = strtoll(value, NULL, 10);
		if (a->feature == FEAT_YEAR)
			return (uint64_t)y;
		m = (unsigned)((value[5] - '0') * 10 + value[6] - '0');
		d = (unsigned)((value[8] - '0') * 10 + value[9] - '0');
		civil_from_days(today_days, &ty, &tm, &td);
		y = ty - y - ((tm < m || (tm == m && td < d)) ? 1 : 0);
		return bucket(a, y);
	case FEAT_NONE:
		break;
	}
	return 0;
}

void
tokenizer_pseudonym(const uint8_t *seed, const char *purpose,
    uint8_t out[TOKEN_PSEUDONYM_BYTES])
{
	crypto_generichash(out, TOKEN_PSEUDONYM_BYTES, (const uint8_t *)purpose,
	    strlen(purpose), seed, CRYPTO_KEY_BYTES);
}

uint64_t
tokenizer_order(const struct tokenizer *t, int purpose,
    const uint8_t ref[CRYPTO_REF_BYTES])
{
	uint8_t h[8];
	uint64_t v = 0;

	crypto_generichash(h, sizeof(h), ref, CRYPTO_REF_BYTES,
	    t->order_keys + (size_t)purpose * CRYPTO_KEY_BYTES, CRYPTO_KEY_BYTES);
	for (int i = 0; i < 8; i++)
		v = v << 8 | h[i];
	return v;
}

int
tokenizer_order_named(const struct tokenizer *t, const uint8_t *root,
    const char *purpose, size_t len, const uint8_t ref[CRYPTO_REF_BYTES],
    uint64_t *order)
{
	char label[sizeof("order|") + SCHEMA_NAME_MAX];
	uint8_t key[CRYPTO_KEY_BYTES], h[8];
	int p = schema_find_purpose(t->s, purpose, len);

	if (p >= 0) {
		*order = tokenizer_order(t, p, ref);
		return 0;
	}
	if (len == 0 || len >= SCHEMA_NAME_MAX || memchr(purpose, '\0', len))
		return VAULT_ERR_INVALID;
	memcpy(label, "order|", 6);
	memcpy(label + 6, purpose, len);
	label[6 + len] = '\0';
	derive(root, label, key);
	crypto_generichash(h, sizeof(h), ref, CRYPTO_REF_BYTES, key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	*order = 0;
	for (int i = 0; i < 8; i++)
		*order = *order << 8 | h[i];
	return 0;
}

uint64_t
tokenizer_lineage_tag(const struct tokenizer *t, uint32_t dataset,
    const uint8_t ref[CRYPTO_REF_BYTES])
{
	uint8_t msg[4 + CRYPTO_REF_BYTES], h[8];
	uint64_t v = 0;

	for (int i = 0; i < 4; i++)
		msg[i] = (uint8_t)(dataset >> (24 - 8 * i));
	memcpy(msg + 4, ref, CRYPTO_REF_BYTES);
	crypto_generichash(h, sizeof(h), msg, sizeof(msg), t->lineage_key,
	    CRYPTO_KEY_BYTES);
	for (int i = 0; i < 8; i++)
		v = v << 8 | h[i];
	return v;
}

const uint8_t *
tokenizer_page_key(const struct tokenizer *t)
{
	return t->page_key;
}
