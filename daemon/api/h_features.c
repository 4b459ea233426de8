#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/dataset.h"
#include "engine/fetch.h"
#include "engine/pagetoken.h"
#include "api/handlers.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

#define DEFAULT_BATCH 1000
#define MAX_BATCH 10000

/* What a page token is bound to (pagetoken.h): see query_binding. */
#define QUERY_BIND_BYTES PAGETOKEN_BIND_BYTES
_Static_assert(QUERY_BIND_BYTES == FETCH_ASKER_BYTES,
    "a query's asker is its binding without the shard");

static void
bind_str(crypto_generichash_state *st, const char *s)
{
	crypto_generichash_update(st, (const uint8_t *)s, strlen(s) + 1);
}

static void
bind_u64(crypto_generichash_state *st, uint64_t v)
{
	uint8_t b[8];

	store_put_u64(b, v);
	crypto_generichash_update(st, b, sizeof(b));
}

/*
 * What a page token is bound to: who asked, for what, under which schema,
 * and, with_shard, which shard. The shard is bound only when the stream is
 * cut (count above 1; 0 and 1 are both the whole stream), so an unsharded
 * stream's tokens are those it had before sharding existed; the attribute
 * list is self-delimiting, so a sharded binding never equals an unsharded
 * one. Without the shard it is the query's asker (fetch.h).
 */
static void
query_binding(struct rpc_ctx *ctx, const struct vault *v,
    const struct fetch_query *q, const char *dataset, bool with_shard,
    uint8_t out[QUERY_BIND_BYTES])
{
	const struct principal *p = rpc_principal(ctx);
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, QUERY_BIND_BYTES);
	bind_str(&st, "vault.v1 page token");
	bind_str(&st, p != NULL ? p->name : "");
	bind_str(&st, v->schema->purposes[q->purpose].name);
	bind_str(&st, dataset);
	bind_u64(&st, q->n_attrs);
	for (size_t i = 0; i < q->n_attrs; i++) {
		const struct attr_def *a = &v->schema->attrs[q->attrs[i]];

		bind_str(&st, a->name);
		bind_u64(&st, (uint64_t)a->feature);
		bind_u64(&st, a->k);
		bind_u64(&st, a->n_edges);
		for (size_t e = 0; e < a->n_edges; e++)
			bind_u64(&st, (uint64_t)a->edges[e]);
	}
	if (with_shard && q->shard_count > 1) {
		bind_str(&st, "shard");
		bind_u64(&st, q->shard_index);
		bind_u64(&st, q->shard_count);
	}
	crypto_generichash_final(&st, out, QUERY_BIND_BYTES);
}

/* shard_index of shard_count: 0 of 0 (or of 1) is the whole stream. */
static int
check_shard(struct rpc_ctx *ctx, uint32_t index, uint32_t count)
{
	if (count > FETCH_MAX_SHARDS)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "shard_count: at most %d",
		    FETCH_MAX_SHARDS);
	if (count == 0 && index != 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "shard_index: needs "
		    "shard_count");
	if (count != 0 && index >= count)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "shard_index: must be "
		    "below shard_count");
	return 0;
}

static int
decode_token(struct rpc_ctx *ctx, const struct vault *v, const char *tok,
    const uint8_t *bind, struct fetch_query *q)
{
	const char *why;

	if (tok[0] == '\0')
		return 0;
	if (pagetoken_decode(tokenizer_page_key(v->tok), tok, bind, &q->after,
	    &why) != 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "%s", why);
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

		if (a < 0) {
			char field[48];

			snprintf(field, sizeof(field), "attributes[%zu]", i);
			return handler_unknown_attr(ctx, s, field, names[i]);
		}
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

/* Sends rows [from, from + n) of set that are not gone, as one batch. */
static int
send_page(struct rpc_ctx *ctx, const struct vault *v, const struct fetch_query *q,
    struct fetch_set *set, size_t from, size_t n, const uint8_t *bind,
    struct batch_buf *b)
{
	Vault__V1__FeatureBatch batch = VAULT__V1__FEATURE_BATCH__INIT;
	char token[PAGETOKEN_CHARS] = "";
	size_t k = 0;
	int r;

	for (size_t i = 0; i < q->n_attrs; i++)
		b->names[i] = (char *)v->schema->attrs[q->attrs[i]].name;
	for (size_t i = from; i < from + n; i++) {
		struct fetch_row *row = fetch_row_at(set, i);

		if (row->gone)
			continue;
		vault__v1__feature_row__init(&b->rows[k]);
		b->rows[k].pseudonym.len = TOKEN_PSEUDONYM_BYTES;
		b->rows[k].pseudonym.data = row->pseudonym;
		b->rows[k].n_tokens = q->n_attrs;
		b->rows[k].tokens = fetch_tokens_at(set, i);
		b->ptrs[k] = &b->rows[k];
		k++;
	}
	if (from + n < set->n &&
	    (r = pagetoken_encode(tokenizer_page_key(v->tok),
	    &fetch_row_at(set, from + n - 1)->pos, bind, token)) != 0)
		return r;
	batch.n_attributes = q->n_attrs;
	batch.attributes = b->names;
	batch.n_rows = k;
	batch.rows = b->ptrs;
	batch.next_page_token = token;
	return rpc_send(ctx, &batch.base);
}

static bool
stream_cancelled(void *ctx)
{
	return rpc_cancelled(ctx);
}

static int
stream_pages(struct rpc_ctx *ctx, struct vault *v, struct fetch_query *q,
    uint32_t batch_size, uint32_t dataset, const uint8_t *bind)
{
	struct fetch_set set = { 0 };
	struct batch_buf b = { 0 };
	size_t from = 0;
	int r;

	q->cancelled = stream_cancelled;
	q->cancel_arg = ctx;
	if ((r = fetch_snapshot(v, q, &set)) == VAULT_ERR_LIMIT)
		return rpc_fail(ctx, r, "the streams' temporary files are at "
		    "stream_spill_max_mb; retry later");
	if (r != 0)
		return r;
	b.rows = calloc(batch_size, sizeof(*b.rows));
	b.ptrs = calloc(batch_size, sizeof(*b.ptrs));
	b.names = calloc(q->n_attrs + 1, sizeof(*b.names));
	if (b.rows == NULL || b.ptrs == NULL || b.names == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	do {
		size_t n = set.n - from < batch_size ? set.n - from : batch_size;

		if (rpc_cancelled(ctx)) {
			r = VAULT_ERR_CANCELLED;
			break;
		}
		if ((r = fetch_page(v, q, dataset, &set, from, n)) != 0 ||
		    (r = send_page(ctx, v, q, &set, from, n, bind, &b)) != 0)
			break;
		from += n;
	} while (from < set.n);
out:
	free(b.rows);
	free(b.ptrs);
	free(b.names);
	fetch_set_free(&set);
	return r;
}

int
handle_fetch_features(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__FetchFeaturesRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct fetch_query q = { 0 };
	int attrs[SCHEMA_MAX_ATTRS];
	uint8_t bind[QUERY_BIND_BYTES];
	uint32_t dataset, batch_size;
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
	if ((r = check_shard(ctx, req->shard_index, req->shard_count)) != 0)
		return r;
	q.attrs = attrs;
	q.shard_index = req->shard_index;
	q.shard_count = req->shard_count;
	batch_size = req->batch_size ? req->batch_size : DEFAULT_BATCH;
	q.today_days = fetch_today();
	query_binding(ctx, v, &q, req->dataset_id, true, bind);
	query_binding(ctx, v, &q, req->dataset_id, false, q.asker);
	if ((r = decode_token(ctx, v, req->page_token, bind, &q)) != 0)
		return r;
	r = dataset_get_or_create(v, req->dataset_id, q.purpose, &dataset, &bound);
	if (r == VAULT_ERR_STATE)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "dataset_id: already used for "
		    "purpose '%s'", bound >= 0 ? v->schema->purposes[bound].name :
		    "(no longer configured)");
	if (r != 0)
		return r;
	/* An ADMT purpose: how the dataset was fetched, on record first. */
	if (v->schema->purposes[q.purpose].admt &&
	    (r = dataset_record_use(v, dataset, attrs, q.n_attrs)) != 0)
		return r;
	return stream_pages(ctx, v, &q, batch_size, dataset, bind);
}

/*
 * Whether GetFeatureSpec labels d's tokens: a category whose values the
 * schema lists, so the labels tell nothing the configuration does not. An
 * open category's values are the consumers' own: a token-to-value table of
 * them is what a dictionary attack on the tokens would find.
 */
static bool
has_labels(const struct attr_def *d)
{
	return d->feature == FEAT_CATEGORY && d->type == ATTR_CATEGORY &&
	    d->values != NULL && d->n_values > 0;
}

/*
 * The labels of the purpose's listed categories, one array for all, in
 * *labels and *ptrs (NULL when there are none); the caller frees both.
 * Every listed value, held or not: leaving out those held by fewer than k
 * would make the answer depend on the data, and a stream sends such a
 * value as OTHER anyway, so its label matches no released row.
 */
static int
make_labels(const struct vault *v, int purpose,
    Vault__V1__CategoryLabel **labels, Vault__V1__CategoryLabel ***ptrs)
{
	const struct schema *s = v->schema;
	int64_t today = fetch_today();
	size_t total = 0, n = 0;

	*labels = NULL;
	*ptrs = NULL;
	for (size_t a = 0; a < s->n_attrs; a++)
		if (schema_purpose_allows(s, purpose, (int)a) &&
		    has_labels(&s->attrs[a]))
			total += s->attrs[a].n_values;
	if (total == 0)
		return 0;
	if ((*labels = calloc(total, sizeof(**labels))) == NULL ||
	    (*ptrs = calloc(total, sizeof(**ptrs))) == NULL) {
		free(*labels);
		*labels = NULL;
		return VAULT_ERR_NOMEM;
	}
	for (size_t a = 0; a < s->n_attrs; a++) {
		const struct attr_def *d = &s->attrs[a];

		if (!schema_purpose_allows(s, purpose, (int)a) || !has_labels(d))
			continue;
		for (size_t i = 0; i < d->n_values; i++, n++) {
			vault__v1__category_label__init(&(*labels)[n]);
			(*labels)[n].value = d->values[i];
			(*labels)[n].token = tokenizer_token(v->tok, purpose,
			    (int)a, d->values[i], strlen(d->values[i]), today);
			(*ptrs)[n] = &(*labels)[n];
		}
	}
	return 0;
}

int
handle_get_feature_spec(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__GetFeatureSpecRequest *req = (const void *)msg;
	Vault__V1__GetFeatureSpecResponse resp =
	    VAULT__V1__GET_FEATURE_SPEC_RESPONSE__INIT;
	Vault__V1__FeatureSpec specs[SCHEMA_MAX_ATTRS];
	Vault__V1__FeatureSpec *ptrs[SCHEMA_MAX_ATTRS];
	Vault__V1__CategoryLabel *labels = NULL, **label_ptrs = NULL;
	struct vault *v = rpc_app(ctx);
	const struct schema *s = v->schema;
	int purpose, r;
	size_t n = 0, next_label = 0;

	if ((r = handler_check_purpose(ctx, req->purpose, &purpose)) != 0)
		return r;
	if ((r = make_labels(v, purpose, &labels, &label_ptrs)) != 0)
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
		/* make_labels went through the attributes in this order. */
		if (has_labels(d)) {
			specs[n].n_labels = d->n_values;
			specs[n].labels = label_ptrs + next_label;
			next_label += d->n_values;
		}
		specs[n].sensitive = d->sensitive;
		ptrs[n] = &specs[n];
		n++;
	}
	resp.purpose = (char *)s->purposes[purpose].name;
	resp.n_attributes = n;
	resp.attributes = ptrs;
	r = rpc_reply(ctx, &resp.base);
	free(labels);
	free(label_ptrs);
	return r;
}
