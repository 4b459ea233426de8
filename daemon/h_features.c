#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataset.h"
#include "fetch.h"
#include "handlers.h"
#include "vault.h"
#include "vault/v1/vault.pb-c.h"

#define DEFAULT_BATCH 1000
#define MAX_BATCH 10000
#define PAGE_TOKEN_VERSION 1
#define QUERY_HASH_BYTES 8
#define PAGE_TOKEN_BYTES (1 + CRYPTO_REF_BYTES + QUERY_HASH_BYTES)
#define PAGE_TOKEN_CHARS 64

/* Binds a page token to its query, so it cannot resume another one. */
static void
query_hash(const struct vault *v, int purpose, const char *dataset,
    const int *attrs, size_t n, uint8_t out[QUERY_HASH_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, QUERY_HASH_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)v->schema->purposes[purpose].name,
	    strlen(v->schema->purposes[purpose].name) + 1);
	crypto_generichash_update(&st, (const uint8_t *)dataset, strlen(dataset) + 1);
	for (size_t i = 0; i < n; i++)
		crypto_generichash_update(&st, (const uint8_t *)v->schema->attrs[attrs[i]].name,
		    strlen(v->schema->attrs[attrs[i]].name) + 1);
	crypto_generichash_final(&st, out, QUERY_HASH_BYTES);
}

static void
encode_token(const uint8_t *ref, const uint8_t *qh, char out[PAGE_TOKEN_CHARS])
{
	uint8_t raw[PAGE_TOKEN_BYTES];

	raw[0] = PAGE_TOKEN_VERSION;
	memcpy(raw + 1, ref, CRYPTO_REF_BYTES);
	memcpy(raw + 1 + CRYPTO_REF_BYTES, qh, QUERY_HASH_BYTES);
	sodium_bin2base64(out, PAGE_TOKEN_CHARS, raw, sizeof(raw),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int
decode_token(struct rpc_ctx *ctx, const char *tok, const uint8_t *qh,
    struct fetch_query *q)
{
	uint8_t raw[PAGE_TOKEN_BYTES];
	size_t n = 0;

	if (tok[0] == '\0')
		return 0;
	if (sodium_base642bin(raw, sizeof(raw), tok, strlen(tok), NULL, &n, NULL,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    n != sizeof(raw) || raw[0] != PAGE_TOKEN_VERSION)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "page_token: malformed");
	if (sodium_memcmp(raw + 1 + CRYPTO_REF_BYTES, qh, QUERY_HASH_BYTES) != 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "page_token: belongs to "
		    "another query (purpose, dataset_id and attributes must match)");
	memcpy(q->after, raw + 1, CRYPTO_REF_BYTES);
	q->has_after = true;
	return 0;
}

/* The requested attributes: each a feature the purpose may use. */
static int
check_attrs(struct rpc_ctx *ctx, const struct vault *v, int purpose,
    char **names, size_t n, int *idx, size_t *n_idx)
{
	bool seen[SCHEMA_MAX_ATTRS] = { false };
	const struct schema *s = v->schema;

	*n_idx = 0;
	if (n == 0) {
		for (size_t a = 0; a < s->n_attrs; a++)
			if (schema_purpose_allows(s, purpose, (int)a))
				idx[(*n_idx)++] = (int)a;
		return 0;
	}
	if (n > s->n_attrs)
		return rpc_fail(ctx, VAULT_ERR_INVALID,
		    "attributes: more than the schema has");
	for (size_t i = 0; i < n; i++) {
		int a = schema_find_attr(s, names[i], strlen(names[i]));

		if (a < 0)
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "attributes[%zu]: unknown attribute", i);
		if (seen[a])
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "attributes[%zu]: attribute '%s' appears twice", i,
			    s->attrs[a].name);
		if (s->attrs[a].feature == FEAT_NONE)
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "attributes[%zu]: attribute '%s' is free text and never "
			    "a feature", i, s->attrs[a].name);
		if (!schema_purpose_allows(s, purpose, a))
			return rpc_fail(ctx, VAULT_ERR_DENIED,
			    "attributes[%zu]: attribute '%s' is not allowed for "
			    "purpose '%s'", i, s->attrs[a].name, s->purposes[purpose].name);
		seen[a] = true;
		idx[(*n_idx)++] = a;
	}
	return 0;
}

struct batch_buf {
	Vault__V1__FeatureRow *rows;
	Vault__V1__FeatureRow **ptrs;
	char **names;
};

static int
send_page(struct rpc_ctx *ctx, const struct vault *v, const struct fetch_query *q,
    const struct fetch_page *pg, const uint8_t *qh, struct batch_buf *b)
{
	Vault__V1__FeatureBatch batch = VAULT__V1__FEATURE_BATCH__INIT;
	char token[PAGE_TOKEN_CHARS] = "";

	for (size_t i = 0; i < q->n_attrs; i++)
		b->names[i] = (char *)v->schema->attrs[q->attrs[i]].name;
	for (size_t i = 0; i < pg->n; i++) {
		vault__v1__feature_row__init(&b->rows[i]);
		b->rows[i].pseudonym.len = TOKEN_PSEUDONYM_BYTES;
		b->rows[i].pseudonym.data = (uint8_t *)pg->pseudonyms[i];
		b->rows[i].n_tokens = q->n_attrs;
		b->rows[i].tokens = pg->tokens + i * pg->n_attrs;
		b->ptrs[i] = &b->rows[i];
	}
	if (!pg->done && pg->has_last)
		encode_token(pg->last, qh, token);
	batch.n_attributes = q->n_attrs;
	batch.attributes = b->names;
	batch.n_rows = pg->n;
	batch.rows = b->ptrs;
	batch.next_page_token = token;
	return rpc_send(ctx, &batch.base);
}

static int
stream_pages(struct rpc_ctx *ctx, struct vault *v, struct fetch_query *q,
    uint32_t dataset, const uint8_t *qh)
{
	struct fetch_page pg;
	struct batch_buf b = { 0 };
	int r;

	if ((r = fetch_page_init(&pg, q->batch_size, q->n_attrs)) != 0)
		return r;
	b.rows = calloc(q->batch_size, sizeof(*b.rows));
	b.ptrs = calloc(q->batch_size, sizeof(*b.ptrs));
	b.names = calloc(q->n_attrs + 1, sizeof(*b.names));
	if (b.rows == NULL || b.ptrs == NULL || b.names == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	for (;;) {
		if (rpc_cancelled(ctx)) {
			r = VAULT_ERR_CANCELLED;
			break;
		}
		if ((r = fetch_read_page(v, q, &pg)) != 0 ||
		    (r = fetch_record_lineage(v, dataset, &pg)) != 0 ||
		    (r = send_page(ctx, v, q, &pg, qh, &b)) != 0 || pg.done)
			break;
		q->has_after = pg.has_last;
		memcpy(q->after, pg.last, CRYPTO_REF_BYTES);
	}
out:
	free(b.rows);
	free(b.ptrs);
	free(b.names);
	fetch_page_free(&pg);
	return r;
}

int
handle_fetch_features(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__FetchFeaturesRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct fetch_query q = { 0 };
	int attrs[SCHEMA_MAX_ATTRS];
	uint8_t qh[QUERY_HASH_BYTES];
	uint32_t dataset;
	const char *why;
	int r, bound;

	if ((r = handler_check_purpose(ctx, req->purpose, &q.purpose)) != 0)
		return r;
	rpc_audit_dataset(ctx, req->dataset_id);
	if ((why = dataset_check_id(req->dataset_id)) != NULL)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "dataset_id: %s", why);
	if ((r = check_attrs(ctx, v, q.purpose, req->attributes,
	    req->n_attributes, attrs, &q.n_attrs)) != 0)
		return r;
	if (q.n_attrs == 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "attributes: the purpose "
		    "allows no feature");
	handler_audit_names(ctx, v->schema, attrs, q.n_attrs);
	if (req->batch_size > MAX_BATCH)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "batch_size: at most %d",
		    MAX_BATCH);
	q.attrs = attrs;
	q.batch_size = req->batch_size ? req->batch_size : DEFAULT_BATCH;
	q.today_days = fetch_today();
	query_hash(v, q.purpose, req->dataset_id, attrs, q.n_attrs, qh);
	if ((r = decode_token(ctx, req->page_token, qh, &q)) != 0)
		return r;
	r = dataset_get_or_create(v, req->dataset_id, q.purpose, &dataset, &bound);
	if (r == VAULT_ERR_STATE)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "dataset_id: already used for "
		    "purpose '%s'", bound >= 0 ? v->schema->purposes[bound].name :
		    "(no longer configured)");
	if (r != 0)
		return r;
	return stream_pages(ctx, v, &q, dataset, qh);
}

int
handle_get_feature_spec(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__GetFeatureSpecRequest *req = (const void *)msg;
	Vault__V1__GetFeatureSpecResponse resp =
	    VAULT__V1__GET_FEATURE_SPEC_RESPONSE__INIT;
	Vault__V1__FeatureSpec specs[SCHEMA_MAX_ATTRS];
	Vault__V1__FeatureSpec *ptrs[SCHEMA_MAX_ATTRS];
	struct vault *v = rpc_app(ctx);
	const struct schema *s = v->schema;
	int purpose, r;
	size_t n = 0;

	if ((r = handler_check_purpose(ctx, req->purpose, &purpose)) != 0)
		return r;
	for (size_t a = 0; a < s->n_attrs; a++) {
		const struct attr_def *d = &s->attrs[a];

		if (!schema_purpose_allows(s, purpose, (int)a))
			continue;
		vault__v1__feature_spec__init(&specs[n]);
		specs[n].attribute = (char *)d->name;
		specs[n].kind = (char *)schema_feature_name(d->feature);
		specs[n].n_bucket_edges = d->n_edges;
		specs[n].bucket_edges = (int64_t *)d->edges;
		if (d->feature == FEAT_CATEGORY) {
			specs[n].other_token = tokenizer_other(v->tok, purpose, (int)a);
			specs[n].k = d->k;
		}
		specs[n].sensitive = d->sensitive;
		ptrs[n] = &specs[n];
		n++;
	}
	resp.purpose = (char *)s->purposes[purpose].name;
	resp.n_attributes = n;
	resp.attributes = ptrs;
	return rpc_reply(ctx, &resp.base);
}
