#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit/audit.h"
#include "engine/consumer.h"
#include "util/log.h"
#include "engine/record.h"
#include "engine/unknown_attrs.h"
#include "store/meta.h"

#define FINGERPRINT_BYTES 16
#define META_BYTES (FINGERPRINT_BYTES + 8)
/* Attribute records looked at per purge transaction (whole consumers). */
#define PURGE_BATCH 2000
/* The names one purge audit entry holds (whole names; the rest still go). */
#define PURGE_NAMES_MAX 512

/* The schema's attribute names, hashed: the record holds for this schema. */
static void
fingerprint(const struct schema *s, uint8_t out[FINGERPRINT_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, FINGERPRINT_BYTES);
	for (size_t a = 0; a < s->n_attrs; a++)
		crypto_generichash_update(&st, (const uint8_t *)s->attrs[a].name,
		    strlen(s->attrs[a].name) + 1);
	crypto_generichash_final(&st, out, FINGERPRINT_BYTES);
}

/* The attribute name of an attrs key, or VAULT_ERR_STATE when malformed. */
static int
key_name(const struct store_val *k, const char **name, size_t *len)
{
	if (k->len <= CRYPTO_REF_BYTES ||
	    k->len - CRYPTO_REF_BYTES >= SCHEMA_NAME_MAX) {
		log_error("an attribute record has a malformed key");
		return VAULT_ERR_STATE;
	}
	*name = (const char *)k->data + CRYPTO_REF_BYTES;
	*len = k->len - CRYPTO_REF_BYTES;
	return 0;
}

static bool
outside(const struct vault *v, const char *name, size_t len)
{
	return schema_find_attr(v->schema, name, len) < 0;
}

/* True when the record says no value is outside this schema. */
static int
known_clean(struct vault *v, bool *clean)
{
	uint8_t fp[FINGERPRINT_BYTES];
	struct store_val val;
	struct store_txn *txn;
	int rc, r;

	*clean = false;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	rc = meta_get(txn, META_UNKNOWN_ATTRS, 0, &val);
	if (rc == 0 && val.len == META_BYTES) {
		fingerprint(v->schema, fp);
		*clean = memcmp(val.data, fp, sizeof(fp)) == 0 &&
		    store_get_u64((const uint8_t *)val.data + FINGERPRINT_BYTES) == 0;
	} else if (rc != 0 && rc != VAULT_ERR_NOT_FOUND) {
		r = rc;
	}
	store_read_end(txn);
	return r;
}

/* How many values of the values record val are outside. */
static int
outside_in_record(struct vault *v, const struct store_val *val,
    struct value_list *l, uint64_t *n)
{
	struct store_val sealed;
	int r;

	*n = 0;
	if ((r = record_values_names(val, l, &sealed)) != 0)
		return r;
	for (size_t i = 0; i < l->n; i++)
		if (outside(v, (const char *)l->e[i].name, l->e[i].name_len))
			(*n)++;
	return 0;
}

/* Counts them, in one snapshot. */
static int
count(struct vault *v, struct unknown_attrs *n)
{
	uint8_t last[CRYPTO_REF_BYTES];
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	struct value_list *l;
	bool have_last = false;
	uint64_t in_record;
	int rc, r;

	memset(n, 0, sizeof(*n));
	if ((l = malloc(sizeof(*l))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = store_read_begin(v->store, &txn)) != 0) {
		free(l);
		return r;
	}
	if ((rc = store_cursor_open(txn, STORE_ATTRS, &cur)) != 0) {
		r = rc;
		goto out;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const char *name;
		size_t len;

		if (k.len == CRYPTO_REF_BYTES) {
			/* A values record: a consumer's whole set. */
			if ((r = outside_in_record(v, &val, l, &in_record)) != 0)
				goto out;
			n->values += in_record;
			n->consumers += in_record > 0;
			continue;
		}
		if ((r = key_name(&k, &name, &len)) != 0)
			goto out;
		if (!outside(v, name, len))
			continue;
		n->values++;
		/* Keys are ref | name: a consumer's records are adjacent. */
		if (!have_last || memcmp(last, k.data, CRYPTO_REF_BYTES) != 0)
			n->consumers++;
		memcpy(last, k.data, CRYPTO_REF_BYTES);
		have_last = true;
	}
	if (rc != VAULT_ERR_NOT_FOUND)
		r = rc;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	free(l);
	return r;
}

/* Records values as the count for the current schema, in txn. */
static int
record_txn(struct vault *v, struct store_txn *txn, uint64_t values)
{
	uint8_t rec[META_BYTES];

	fingerprint(v->schema, rec);
	store_put_u64(rec + FINGERPRINT_BYTES, values);
	return meta_put(txn, META_UNKNOWN_ATTRS, 0, rec, sizeof(rec));
}

struct record_job {
	struct vault *v;
	uint64_t values;
};

static int
record_job_apply(struct store_txn *txn, void *arg)
{
	struct record_job *job = arg;

	return record_txn(job->v, txn, job->values);
}

int
unknown_attrs_report(struct vault *v)
{
	struct unknown_attrs n;
	struct record_job job = { v, 0 };
	bool clean;
	int r;

	if ((r = known_clean(v, &clean)) != 0 || clean)
		return r;
	if ((r = count(v, &n)) != 0)
		return r;
	if (n.values > 0)
		log_warn("%llu stored attribute value(s) of %llu consumer(s) outside "
		    "the schema: ExportConsumer lists them, GetAttributes and "
		    "FetchFeatures do not; vaultd --purge-unknown-attributes removes "
		    "them (docs/operations.md)", (unsigned long long)n.values,
		    (unsigned long long)n.consumers);
	job.values = n.values;
	return writer_submit(v->wr, record_job_apply, &job);
}

/* ------------------------------------------------------------- purge */

struct purge_job {
	struct vault *v;
	uint8_t from[RECORD_ATTR_KEY_MAX];	/* where the next batch starts */
	size_t from_len;			/* 0: at the first record */
	bool done;
	struct unknown_attrs batch;		/* what this batch removed */
};

/* One consumer's purge so far: its ref and the names removed. */
struct purged {
	uint8_t ref[CRYPTO_REF_BYTES];
	bool active;
	char names[PURGE_NAMES_MAX];
	size_t off;
};

/* The audit entry of one consumer's purge, when something went. */
static int
purged_flush(struct vault *v, struct store_txn *txn, struct purged *p,
    struct unknown_attrs *batch)
{
	struct audit_rec rec = { "vaultd", AUDIT_METHOD_PURGE, p->ref, "", "", "",
	    "ok", p->names, "" };
	int r = 0;

	if (p->active && p->names[0] != '\0') {
		batch->consumers++;
		/* Its manifest no longer lists what went (consumer.h). */
		if ((r = consumer_manifest_prune_txn(v, txn, p->ref)) == 0)
			r = audit_append_txn(&v->audit, txn, &rec);
	}
	p->names[0] = '\0';
	p->off = 0;
	return r;
}

static void
purged_add(struct purged *p, const char *name, size_t len)
{
	if (p->off + len + 2 > sizeof(p->names))
		return;
	if (p->off > 0)
		p->names[p->off++] = ',';
	memcpy(p->names + p->off, name, len);
	p->off += len;
	p->names[p->off] = '\0';
}

/*
 * Removes the values outside the schema from the values record of the
 * consumer at ref, naming them in p; *removed says how many. The record is
 * opened and sealed again under the consumer's DEK. A record of a consumer
 * deleted and not yet collected is left to the collector.
 */
static int
purge_record(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    struct purged *p, uint64_t *removed)
{
	struct store_val val;
	struct values_taken t = { 0 };
	struct value_list *l = NULL;
	struct consumer_rec rec;
	uint8_t *dek = NULL;
	int rc, r;

	*removed = 0;
	rc = store_get(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, &val);
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if ((r = record_parse_consumer(&val, &rec)) != 0 || !rec.one_record)
		return r;
	if ((l = malloc(sizeof(*l))) == NULL ||
	    (dek = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((r = record_unwrap_dek(v->kr, txn, ref, &rec, dek)) != 0 ||
	    (r = consumer_values_take(v, txn, ref, &rec, dek, l, &t)) != 0)
		goto out;
	for (size_t i = 0; i < l->n;) {
		const char *name = (const char *)l->e[i].name;

		if (!outside(v, name, l->e[i].name_len)) {
			i++;
			continue;
		}
		purged_add(p, name, l->e[i].name_len);
		record_values_remove(l, i);
		(*removed)++;
	}
	if (*removed > 0)
		r = consumer_values_put_txn(v, txn, ref, true, dek,
		    rec.dek_generation, l);
out:
	consumer_values_release(&t);
	crypto_secret_free(dek);
	free(l);
	return r;
}

static int
purge_apply(struct store_txn *txn, void *arg)
{
	struct purge_job *job = arg;
	struct vault *v = job->v;
	struct purged p = { .active = false };
	struct store_cursor *cur = NULL;
	struct store_val k = { job->from_len, job->from }, val;
	size_t seen = 0;
	int rc, r = 0;

	memset(&job->batch, 0, sizeof(job->batch));
	p.names[0] = '\0';
	if ((rc = store_cursor_open(txn, STORE_ATTRS, &cur)) != 0)
		return rc;
	rc = store_cursor_get(cur, &k, &val,
	    job->from_len ? STORE_SEEK : STORE_FIRST);
	for (; rc == 0; rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		uint8_t key[STORE_KEY_MAX];
		const char *name = NULL;
		uint64_t removed;
		size_t len = 0;

		/* The key is used after purged_flush writes: a store_val is not. */
		memcpy(key, k.data, k.len);
		k.data = key;
		/* A values record (key ref) holds a consumer's whole set. */
		if (k.len != CRYPTO_REF_BYTES &&
		    (r = key_name(&k, &name, &len)) != 0)
			break;
		if (!p.active || memcmp(p.ref, k.data, CRYPTO_REF_BYTES) != 0) {
			if ((r = purged_flush(v, txn, &p, &job->batch)) != 0)
				break;
			/* A batch ends between consumers: one entry each. */
			if (seen >= PURGE_BATCH) {
				memcpy(job->from, k.data, k.len);
				job->from_len = k.len;
				break;
			}
			memcpy(p.ref, k.data, CRYPTO_REF_BYTES);
			p.active = true;
		}
		seen++;
		if (k.len == CRYPTO_REF_BYTES) {
			if ((r = purge_record(v, txn, p.ref, &p, &removed)) != 0)
				break;
			job->batch.values += removed;
			/* Written past the cursor: it stands on the record again. */
			if (removed > 0 && (rc = store_cursor_get(cur, &k, &val,
			    STORE_SEEK)) != 0)
				break;
			continue;
		}
		if (!outside(v, name, len))
			continue;
		purged_add(&p, name, len);
		if ((rc = store_cursor_del(cur)) != 0)
			break;
		job->batch.values++;
	}
	if (r == 0 && rc == VAULT_ERR_NOT_FOUND) {
		job->done = true;
		r = purged_flush(v, txn, &p, &job->batch);
	} else if (r == 0 && rc != 0) {
		r = rc;
	}
	store_cursor_close(cur);
	return r;
}

/* The suppression counts of attributes outside the schema; then the record. */
static int
finish_apply(struct store_txn *txn, void *arg)
{
	struct vault *v = arg;
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc, r = 0;

	if ((rc = store_cursor_open(txn, STORE_COUNTS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		/* A counts key: attribute name, NUL, hash of the value. */
		const char *nul = memchr(k.data, '\0', k.len);

		if (nul == NULL || !outside(v, k.data,
		    (size_t)(nul - (const char *)k.data)))
			continue;
		if ((rc = store_cursor_del(cur)) != 0)
			break;
	}
	store_cursor_close(cur);
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		return rc;
	return r != 0 ? r : record_txn(v, txn, 0);
}

int
unknown_attrs_purge(struct vault *v, struct unknown_attrs *out)
{
	struct purge_job job = { .v = v };
	int r;

	memset(out, 0, sizeof(*out));
	while (!job.done) {
		if ((r = writer_submit(v->wr, purge_apply, &job)) != 0)
			return r;
		out->values += job.batch.values;
		out->consumers += job.batch.consumers;
	}
	return writer_submit(v->wr, finish_apply, v);
}
