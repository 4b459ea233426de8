#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "fetch.h"
#include "log.h"
#include "record.h"


int
fetch_page_init(struct fetch_page *pg, size_t cap, size_t n_attrs)
{
	memset(pg, 0, sizeof(*pg));
	pg->cap = cap;
	pg->n_attrs = n_attrs;
	pg->refs = calloc(cap, sizeof(*pg->refs));
	pg->pseudonyms = calloc(cap, sizeof(*pg->pseudonyms));
	pg->tokens = calloc(cap * (n_attrs ? n_attrs : 1), sizeof(uint64_t));
	pg->scratch = crypto_secret_alloc(RECORD_SCRATCH_BYTES);
	if (pg->refs == NULL || pg->pseudonyms == NULL || pg->tokens == NULL ||
	    pg->scratch == NULL) {
		fetch_page_free(pg);
		return VAULT_ERR_NOMEM;
	}
	return 0;
}

void
fetch_page_free(struct fetch_page *pg)
{
	free(pg->refs);
	free(pg->pseudonyms);
	free(pg->tokens);
	crypto_secret_free(pg->scratch);
	memset(pg, 0, sizeof(*pg));
}

int64_t
fetch_today(void)
{
	return (int64_t)(store_now_ms() / 86400000ULL);
}

/* A categorical token, or OTHER when fewer than k live consumers hold it. */
static int
category_token(struct vault *v, MDB_txn *txn, const struct fetch_query *q,
    int attr, const char *value, size_t len, uint64_t *token)
{
	uint8_t key[TOKEN_COUNT_KEY_MAX];
	MDB_val k = { tokenizer_count_key(v->tok, attr, value, len, key), key }, c;
	uint64_t holders = 0;
	int rc = mdb_get(txn, v->store->counts, &k, &c);

	if (rc == 0 && c.mv_size == 8)
		holders = store_get_u64(c.mv_data);
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return store_err(v->store, rc, "get count");
	*token = holders < v->schema->attrs[attr].k ?
	    tokenizer_other(v->tok, q->purpose, attr) :
	    tokenizer_token(v->tok, q->purpose, attr, value, len, q->today_days);
	return 0;
}

/* One row: pseudonym and tokens of the consumer at ref. */
static int
read_row(struct vault *v, MDB_txn *txn, const struct fetch_query *q,
    const uint8_t *ref, const MDB_val *crec, uint8_t flags,
    struct fetch_page *pg)
{
	const struct schema *s = v->schema;
	uint8_t *dek = pg->scratch, *seed = dek + CRYPTO_KEY_BYTES;
	uint8_t *value = seed + CRYPTO_KEY_BYTES, key[RECORD_ATTR_KEY_MAX];
	uint64_t *tokens = pg->tokens + pg->n * pg->n_attrs;
	bool limited = (flags & CONSENT_LIMIT_SENSITIVE) &&
	    !s->purposes[q->purpose].essential;
	struct consumer_rec rec;
	size_t len;
	int rc, r;

	if ((r = record_parse_consumer(crec, &rec)) != 0 ||
	    (r = record_unwrap_dek(v->kr, ref, &rec, dek)) != 0 ||
	    (r = record_open_seed(dek, ref, &rec, seed)) != 0)
		return r;
	tokenizer_pseudonym(seed, s->purposes[q->purpose].name, pg->pseudonyms[pg->n]);
	for (size_t j = 0; j < q->n_attrs; j++) {
		const struct attr_def *a = &s->attrs[q->attrs[j]];
		MDB_val k, val;

		tokens[j] = 0;
		if (limited && a->sensitive)
			continue;
		k = (MDB_val){ record_attr_key(key, ref, a->name), key };
		if ((rc = mdb_get(txn, v->store->attrs, &k, &val)) == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return store_err(v->store, rc, "get attribute");
		if ((r = record_open_attr(dek, ref, a->name, rec.dek_generation,
		    &val, value, SCHEMA_VALUE_MAX + 1, &len, NULL)) != 0)
			return r;
		if (a->feature == FEAT_CATEGORY)
			r = category_token(v, txn, q, q->attrs[j], (char *)value, len,
			    &tokens[j]);
		else
			tokens[j] = tokenizer_token(v->tok, q->purpose, q->attrs[j],
			    (char *)value, len, q->today_days);
		if (r != 0)
			return r;
	}
	memcpy(pg->refs[pg->n], ref, CRYPTO_REF_BYTES);
	pg->n++;
	return 0;
}

int
fetch_read_page(struct vault *v, const struct fetch_query *q,
    struct fetch_page *pg)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, val;
	size_t scanned = 0, max_scan = (size_t)q->batch_size * 4 + 64;
	uint8_t flags;
	bool allowed;
	int rc, r = 0;

	pg->n = 0;
	pg->done = false;
	pg->has_last = q->has_after;
	if (q->has_after)
		memcpy(pg->last, q->after, CRYPTO_REF_BYTES);
	if (q->batch_size > pg->cap || q->n_attrs > pg->n_attrs)
		return VAULT_ERR_INVALID;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((rc = mdb_cursor_open(txn, v->store->consumers, &cur)) != 0) {
		r = store_err(v->store, rc, "open cursor");
		goto out;
	}
	if (q->has_after) {
		k = (MDB_val){ CRYPTO_REF_BYTES, (void *)q->after };
		rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == CRYPTO_REF_BYTES &&
		    memcmp(k.mv_data, q->after, CRYPTO_REF_BYTES) == 0)
			rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT);
	} else {
		rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST);
	}
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		if (k.mv_size != CRYPTO_REF_BYTES) {
			log_error("a consumer key has the wrong size");
			r = VAULT_ERR_STATE;
			goto out;
		}
		memcpy(pg->last, k.mv_data, CRYPTO_REF_BYTES);
		pg->has_last = true;
		if ((r = consent_allows(v, txn, k.mv_data, q->purpose, &allowed,
		    &flags)) != 0)
			goto out;
		if (allowed && (r = read_row(v, txn, q, k.mv_data, &val, flags,
		    pg)) != 0)
			goto out;
		if (pg->n == q->batch_size || ++scanned == max_scan)
			break;
	}
	if (rc == MDB_NOTFOUND)
		pg->done = true;
	else if (rc != 0)
		r = store_err(v->store, rc, "scan consumers");
	else if (mdb_cursor_get(cur, &k, &val, MDB_NEXT) == MDB_NOTFOUND)
		pg->done = true;
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return r;
}

struct lineage_job {
	struct store *st;
	uint32_t dataset;
	const struct fetch_page *pg;
};

static int
lineage_apply(MDB_txn *txn, void *arg)
{
	struct lineage_job *job = arg;
	struct store *st = job->st;
	uint8_t num[4];
	int rc;

	store_put_u32(num, job->dataset);
	for (size_t i = 0; i < job->pg->n; i++) {
		MDB_val k = { CRYPTO_REF_BYTES, job->pg->refs[i] }, v;

		/* A consumer deleted since the page was read needs no lineage. */
		if ((rc = mdb_get(txn, st->consumers, &k, &v)) == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return store_err(st, rc, "get consumer");
		v = (MDB_val){ sizeof(num), num };
		rc = mdb_put(txn, st->lineage, &k, &v, MDB_NODUPDATA);
		if (rc != 0 && rc != MDB_KEYEXIST)
			return store_err(st, rc, "put lineage");
	}
	return 0;
}

int
fetch_record_lineage(struct vault *v, uint32_t dataset,
    const struct fetch_page *pg)
{
	struct lineage_job job = { v->store, dataset, pg };

	if (pg->n == 0)
		return 0;
	return writer_submit(v->wr, lineage_apply, &job);
}
