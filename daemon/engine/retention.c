/*
 * Retention (retention.h): expiry by the schema's retain_days, and the
 * janitor's pass that erases expired values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "engine/consumer.h"
#include "engine/deletion.h"
#include "engine/receipt.h"
#include "engine/record.h"
#include "engine/retention.h"
#include "util/log.h"

#define DAY_MS 86400000ULL
/* Records read, and consumers erased, per transaction: the writer is shared. */
#define PASS_BATCH 2000
#define ERASE_BATCH 64

struct pass_job {
	struct vault *v;
	uint64_t now;
	uint8_t from[STORE_KEY_MAX];
	size_t from_len;
	bool done;
	size_t erased;			/* consumers, in this transaction */
	struct retention_done batch;
	struct value_list l;
};

/* Whether the values record (or older attribute record) at k holds one expired. */
static bool
holds_expired(struct pass_job *job, const struct store_val *k,
    const struct store_val *val)
{
	const struct schema *s = job->v->schema;
	struct store_val sealed;

	if (k->len > CRYPTO_REF_BYTES)	/* ref | name: the older layout */
		return schema_expired(s, schema_find_attr(s,
		    (const char *)k->data + CRYPTO_REF_BYTES,
		    k->len - CRYPTO_REF_BYTES), record_attr_updated(val),
		    job->now);
	/* Not authenticated yet: a damaged one is found when it is opened. */
	if (record_values_names(val, &job->l, &sealed) != 0)
		return false;
	for (size_t i = 0; i < job->l.n; i++)
		if (schema_expired(s, schema_find_attr(s,
		    (const char *)job->l.e[i].name, job->l.e[i].name_len),
		    job->l.e[i].updated_ms, job->now))
			return true;
	return false;
}

/*
 * Erases what expired of the consumer at ref, with its audit entry. A
 * consumer whose key or values fail their check is passed over (logged;
 * --check reports it): one damaged record must not stop the pass for
 * every consumer after it. Reads withhold its expired values all the same.
 */
static int
erase(struct pass_job *job, struct store_txn *txn, const uint8_t *ref)
{
	char names[AUDIT_NAMES_MAX], detail[48];
	struct audit_rec rec = { "vaultd", AUDIT_METHOD_RETENTION, ref, detail,
	    "", "", "ok", names, "" };
	uint64_t removed;
	int r;

	r = consumer_expire_txn(job->v, txn, ref, job->now, names,
	    sizeof(names), &removed);
	if (r == VAULT_ERR_CRYPTO || r == VAULT_ERR_KEY) {
		log_error("retention: a consumer's key or values failed their "
		    "check; its expired values stay (withheld from reads)");
		return 0;
	}
	if (r != 0 || removed == 0)
		return r;
	job->batch.values += removed;
	job->batch.consumers++;
	job->erased++;
	/* The names may not all fit; the count always does. */
	snprintf(detail, sizeof(detail), "%llu values erased",
	    (unsigned long long)removed);
	return audit_append_txn(&job->v->audit, txn, &rec);
}

/* ref + 1, as a big-endian number: the first key past ref's prefix. */
static bool
next_ref(uint8_t ref[CRYPTO_REF_BYTES])
{
	for (int i = CRYPTO_REF_BYTES - 1; i >= 0; i--)
		if (++ref[i] != 0)
			return true;
	return false;		/* ref was the last possible */
}

static int
pass_apply(struct store_txn *txn, void *arg)
{
	struct pass_job *job = arg;
	struct store_cursor *cur = NULL;
	struct store_val k = { job->from_len, job->from }, val;
	uint8_t ref[CRYPTO_REF_BYTES];
	size_t seen = 0;
	int rc, r = 0;

	memset(&job->batch, 0, sizeof(job->batch));
	job->erased = 0;
	if ((rc = store_cursor_open(txn, STORE_ATTRS, &cur)) != 0)
		return rc;
	rc = store_cursor_get(cur, &k, &val,
	    job->from_len ? STORE_SEEK : STORE_FIRST);
	while (rc == 0) {
		if (k.len < CRYPTO_REF_BYTES) {
			/* Not a consumer's: --check reports it. */
			rc = store_cursor_get(cur, &k, &val, STORE_NEXT);
			continue;
		}
		if (seen++ >= PASS_BATCH || job->erased >= ERASE_BATCH) {
			memcpy(job->from, k.data, k.len);
			job->from_len = k.len;
			break;
		}
		if (!holds_expired(job, &k, &val)) {
			rc = store_cursor_get(cur, &k, &val, STORE_NEXT);
			continue;
		}
		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		if ((r = erase(job, txn, ref)) != 0)
			break;
		/*
		 * On past every record of the consumer: its values record is
		 * whole now, and what it could not erase (a consumer deleted,
		 * its records left to the collector) must not be met again.
		 */
		if (!next_ref(ref)) {
			rc = VAULT_ERR_NOT_FOUND;
			break;
		}
		k = (struct store_val){ CRYPTO_REF_BYTES, ref };
		rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	}
	store_cursor_close(cur);
	if (r == 0 && rc == VAULT_ERR_NOT_FOUND) {
		job->done = true;
		return 0;
	}
	return r != 0 ? r : rc;
}

int
retention_pass(struct vault *v, uint64_t now_ms, struct retention_done *out)
{
	struct pass_job *job;
	int r = 0;

	memset(out, 0, sizeof(*out));
	if (!schema_retains(v->schema))
		return 0;
	if ((job = calloc(1, sizeof(*job))) == NULL)
		return VAULT_ERR_NOMEM;
	job->v = v;
	job->now = now_ms;
	while (!job->done && r == 0) {
		if ((r = writer_submit(v->wr, pass_apply, job)) != 0)
			break;
		out->values += job->batch.values;
		out->consumers += job->batch.consumers;
	}
	free(job);
	if (out->values > 0)
		log_info("retention: erased %llu expired values of %llu "
		    "consumers", (unsigned long long)out->values,
		    (unsigned long long)out->consumers);
	return r;
}

/* Consumers deleted for inactivity per transaction (and per scan). */
#define INACTIVE_BATCH 256
#define INACTIVE_ID_PREFIX "inactive-"

struct inactive_scan {
	uint8_t from[CRYPTO_REF_BYTES];
	bool has_from, done;
	uint8_t refs[INACTIVE_BATCH][CRYPTO_REF_BYTES];
	size_t n;
	struct value_list l;
};

/* The consumer's last activity: its last value written, or its creation. */
static int
last_active(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct store_val *crec, struct value_list *l, uint64_t *at)
{
	uint8_t copy[RECORD_CONSUMER_BYTES];
	struct store_val val = *crec;
	struct consumer_rec rec;
	int r;

	if (val.len == sizeof(copy)) {
		memcpy(copy, val.data, sizeof(copy));
		val.data = copy;
	}
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = consumer_values_load(v, txn, ref, &rec, l)) != 0)
		return r;
	*at = rec.created_ms;
	for (size_t i = 0; i < l->n; i++)
		if (l->e[i].updated_ms > *at)
			*at = l->e[i].updated_ms;
	return 0;
}

/* The next batch of inactive consumers, in one snapshot, from s->from on. */
static int
scan_inactive(struct vault *v, uint64_t before_ms, struct inactive_scan *s)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, s->from }, val;
	uint8_t ref[CRYPTO_REF_BYTES];
	uint64_t at;
	int rc, r = 0;

	s->n = 0;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((rc = store_cursor_open(txn, STORE_CONSUMERS, &cur)) != 0) {
		store_read_end(txn);
		return rc;
	}
	rc = store_cursor_get(cur, &k, &val, s->has_from ? STORE_SEEK :
	    STORE_FIRST);
	for (; rc == 0 && s->n < INACTIVE_BATCH;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len != CRYPTO_REF_BYTES)
			continue;
		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		memcpy(s->from, ref, CRYPTO_REF_BYTES);
		s->has_from = true;
		r = last_active(v, txn, ref, &val, &s->l, &at);
		/* Damaged: --check reports it; a deletion needs no values. */
		if (r == VAULT_ERR_CRYPTO) {
			r = 0;
			continue;
		}
		if (r != 0)
			break;
		if (at < before_ms)
			memcpy(s->refs[s->n++], ref, CRYPTO_REF_BYTES);
		/* The cursor stands on this record: read it again to move on. */
		k = (struct store_val){ CRYPTO_REF_BYTES, s->from };
		if ((rc = store_cursor_get(cur, &k, &val, STORE_SEEK)) != 0)
			break;
	}
	s->done = r == 0 && rc == VAULT_ERR_NOT_FOUND;
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	store_cursor_close(cur);
	store_read_end(txn);
	/* The next scan starts past the last ref read. */
	if (r == 0 && s->has_from)
		for (int i = CRYPTO_REF_BYTES - 1; i >= 0 && ++s->from[i] == 0; i--)
			;
	return r;
}

/* Deletes s's batch: audit entries first, then one deletion transaction. */
static int
delete_batch(struct vault *v, struct inactive_scan *s, uint64_t now_ms,
    uint64_t *deleted)
{
	char ids[INACTIVE_BATCH][sizeof(INACTIVE_ID_PREFIX) + 20 + 1 + 32];
	struct deletion_request reqs[INACTIVE_BATCH];
	struct receipt *out;
	size_t bad;
	int r = 0;

	if (s->n == 0)
		return 0;
	if ((out = calloc(s->n, sizeof(*out))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < s->n && r == 0; i++) {
		struct audit_rec rec = { "vaultd", AUDIT_METHOD_INACTIVE,
		    s->refs[i], "", "", "", "ok", "", "" };
		char hex[2 * CRYPTO_REF_BYTES + 1];

		crypto_hex(s->refs[i], CRYPTO_REF_BYTES, hex);
		/* A consumer written again later may be deleted again. */
		snprintf(ids[i], sizeof(ids[i]), INACTIVE_ID_PREFIX "%llu-%.32s",
		    (unsigned long long)(now_ms / DAY_MS), hex);
		reqs[i] = (struct deletion_request){ s->refs[i], ids[i] };
		r = audit_append(&v->audit, &rec);
	}
	if (r == 0 && (r = deletion_run(v, reqs, s->n, out, &bad)) == 0)
		for (size_t i = 0; i < s->n; i++)
			*deleted += out[i].found && !out[i].repeated;
	for (size_t i = 0; i < s->n; i++)
		receipt_clear(&out[i]);
	free(out);
	return r;
}

int
retention_inactive_pass(struct vault *v, uint64_t now_ms, uint64_t *deleted)
{
	uint64_t keep = (uint64_t)v->cfg->consumer_inactive_days * DAY_MS;
	struct inactive_scan *s;
	int r = 0;

	*deleted = 0;
	if (keep == 0 || now_ms <= keep)
		return 0;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return VAULT_ERR_NOMEM;
	while (!s->done && r == 0)
		if ((r = scan_inactive(v, now_ms - keep, s)) == 0)
			r = delete_batch(v, s, now_ms, deleted);
	free(s);
	if (*deleted > 0)
		log_info("retention: deleted %llu consumers inactive for %d days",
		    (unsigned long long)*deleted, v->cfg->consumer_inactive_days);
	return r;
}
