/*
 * Retention (retention.h): expiry by the schema's retain_days, and the
 * janitor's pass that erases expired values.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "engine/consumer.h"
#include "engine/record.h"
#include "engine/retention.h"
#include "util/log.h"

#define DAY_MS 86400000ULL
/* Records read per transaction: a pass never holds the writer long. */
#define PASS_BATCH 2000

uint64_t
retention_expires_ms(const struct schema *s, int attr, uint64_t updated_ms)
{
	uint32_t days;

	if (attr < 0 || (size_t)attr >= s->n_attrs ||
	    (days = s->attrs[attr].retain_days) == 0)
		return 0;
	return updated_ms + days * DAY_MS;
}

bool
retention_expired(const struct schema *s, int attr, uint64_t updated_ms,
    uint64_t now_ms)
{
	uint64_t at = retention_expires_ms(s, attr, updated_ms);

	return at != 0 && at <= now_ms;
}

bool
retention_any(const struct schema *s)
{
	for (size_t a = 0; a < s->n_attrs; a++)
		if (s->attrs[a].retain_days != 0)
			return true;
	return false;
}

struct pass_job {
	struct vault *v;
	uint64_t now;
	uint8_t from[STORE_KEY_MAX];
	size_t from_len;
	bool done;
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
		return retention_expired(s, schema_find_attr(s,
		    (const char *)k->data + CRYPTO_REF_BYTES,
		    k->len - CRYPTO_REF_BYTES), record_attr_updated(val),
		    job->now);
	/* Not authenticated yet: a damaged one is found when it is opened. */
	if (record_values_names(val, &job->l, &sealed) != 0)
		return false;
	for (size_t i = 0; i < job->l.n; i++)
		if (retention_expired(s, schema_find_attr(s,
		    (const char *)job->l.e[i].name, job->l.e[i].name_len),
		    job->l.e[i].updated_ms, job->now))
			return true;
	return false;
}

/* Erases what expired of the consumer at ref, with its audit entry. */
static int
erase(struct pass_job *job, struct store_txn *txn, const uint8_t *ref)
{
	char names[AUDIT_NAMES_MAX];
	struct audit_rec rec = { "vaultd", AUDIT_METHOD_RETENTION, ref, "", "",
	    "", "ok", names, "" };
	uint64_t removed;
	int r;

	if ((r = consumer_expire_txn(job->v, txn, ref, job->now, names,
	    sizeof(names), &removed)) != 0 || removed == 0)
		return r;
	job->batch.values += removed;
	job->batch.consumers++;
	return audit_append_txn(&job->v->audit, txn, &rec);
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
	if ((rc = store_cursor_open(txn, STORE_ATTRS, &cur)) != 0)
		return rc;
	rc = store_cursor_get(cur, &k, &val,
	    job->from_len ? STORE_SEEK : STORE_FIRST);
	for (; rc == 0; rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len < CRYPTO_REF_BYTES)
			continue;	/* not a consumer's: --check reports it */
		if (seen++ >= PASS_BATCH) {
			memcpy(job->from, k.data, k.len);
			job->from_len = k.len;
			break;
		}
		if (!holds_expired(job, &k, &val))
			continue;
		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		if ((r = erase(job, txn, ref)) != 0)
			break;
		/* Written past the cursor: on from the consumer's first key. */
		k = (struct store_val){ CRYPTO_REF_BYTES, ref };
		if ((rc = store_cursor_get(cur, &k, &val, STORE_SEEK)) != 0)
			break;
		/* Its values record again, now without what expired. */
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
	if (!retention_any(v->schema))
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
