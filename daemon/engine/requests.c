/*
 * The CCPA request records: one per request to know, opt out or delete,
 * kept for the retention period (janitor.c) as the proof a request was
 * made and answered. Deletion receipts (receipt.c) share the key space
 * and the record's head.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/requests.h"

int
requests_log_more_txn(struct store_txn *txn, const char *kind,
    const uint8_t *ref, const void *more, size_t more_len)
{
	char key[REQUEST_KEY_MAX + 1], hex[2 * CRYPTO_REF_BYTES + 1];
	uint8_t rec[REQUEST_REC_BYTES + REQUEST_MORE_MAX];
	struct timespec ts;
	struct store_val val;
	int rc = VAULT_ERR_EXISTS;

	if (more_len > REQUEST_MORE_MAX ||
	    strlen(kind) > REQUEST_KEY_MAX - 2 * CRYPTO_REF_BYTES - 31)
		return VAULT_ERR_INVALID;
	clock_gettime(CLOCK_REALTIME, &ts);
	crypto_hex(ref, CRYPTO_REF_BYTES, hex);
	rec[0] = REQUEST_REC_FORMAT;
	store_put_u64(rec + REQUEST_AT, store_now_ms());
	memcpy(rec + REQUEST_REF, ref, CRYPTO_REF_BYTES);
	if (more_len > 0)
		memcpy(rec + REQUEST_REC_BYTES, more, more_len);
	val = (struct store_val){ REQUEST_REC_BYTES + more_len, rec };
	/* A record is never overwritten: the same nanosecond takes the next. */
	for (int i = 0; i < 16 && rc == VAULT_ERR_EXISTS; i++) {
		snprintf(key, sizeof(key), "%s:%s:%020lld%09ld", kind, hex,
		    (long long)ts.tv_sec, ts.tv_nsec);
		rc = store_put(txn, STORE_REQUESTS, key, strlen(key), val.data,
		    val.len, STORE_NOOVERWRITE);
		if (++ts.tv_nsec == 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec = 0;
		}
	}
	return rc;
}

int
requests_log_txn(struct store_txn *txn, const char *kind, const uint8_t *ref)
{
	return requests_log_more_txn(txn, kind, ref, NULL, 0);
}

struct log_job {
	const char *kind;
	const uint8_t *ref;
};

static int
log_apply(struct store_txn *txn, void *arg)
{
	struct log_job *job = arg;

	return requests_log_txn(txn, job->kind, job->ref);
}

int
requests_log(struct vault *v, const char *kind, const uint8_t *ref)
{
	struct log_job job = { kind, ref };

	return writer_submit(v->wr, log_apply, &job);
}

/* Where a sweep of the request records stands between transactions. */
struct requests_sweep {
	char key[STORE_KEY_MAX + 1];	/* the next record to look at */
	size_t len;		/* 0: the first record */
	bool end;		/* the last transaction reached the end */
};

/*
 * In a write txn: looks at up to max request records from sw's position,
 * drops those older than before_ms, and moves sw on.
 */
static int
requests_expire_txn(struct store_txn *txn, uint64_t before_ms,
    size_t max, struct requests_sweep *sw, size_t *expired)
{
	struct store_cursor *cur = NULL;
	struct store_val k = { sw->len, sw->key }, val;
	size_t seen = 0;
	int rc;

	*expired = 0;
	if ((rc = store_cursor_open(txn, STORE_REQUESTS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, sw->len > 0 ? STORE_SEEK :
	    STORE_FIRST); rc == 0 && seen < max; seen++) {
		const uint8_t *p = val.data;

		if (val.len >= REQUEST_REC_MIN && p[0] == REQUEST_REC_FORMAT &&
		    store_get_u64(p + REQUEST_AT) < before_ms) {
			if ((rc = store_cursor_del(cur)) != 0)
				break;
			(*expired)++;
			rc = store_cursor_get(cur, &k, &val, STORE_CURRENT);
			continue;
		}
		rc = store_cursor_get(cur, &k, &val, STORE_NEXT);
	}
	/* Stopped at max: the record under the cursor is where to go on. */
	if (rc == 0 && k.len <= sizeof(sw->key)) {
		memcpy(sw->key, k.data, k.len);
		sw->len = k.len;
	} else if (rc == 0) {
		rc = VAULT_ERR_STATE;	/* longer than any key (store.h) */
	}
	sw->end = rc == VAULT_ERR_NOT_FOUND;
	store_cursor_close(cur);
	return rc == 0 || rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}

struct requests_job {
	struct vault *v;
	uint64_t before;
	size_t per_txn;
	struct requests_sweep sw;
	size_t done;
};

static int
requests_apply(struct store_txn *txn, void *arg)
{
	struct requests_job *job = arg;

	return requests_expire_txn(txn, job->before, job->per_txn,
	    &job->sw, &job->done);
}

int
requests_expire(struct vault *v, uint64_t before_ms, size_t per_txn,
    size_t *expired, size_t *txns)
{
	struct requests_job job = { .v = v, .before = before_ms,
	    .per_txn = per_txn };
	int r;

	*expired = 0;
	*txns = 0;
	do {
		if ((r = writer_submit(v->wr, requests_apply, &job)) != 0)
			return r;
		*expired += job.done;
		(*txns)++;
	} while (!job.sw.end);
	return 0;
}

int
requests_count_txn(struct store_txn *txn, const char *kind, uint64_t since_ms,
    uint64_t until_ms, uint64_t *n)
{
	char prefix[32];
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "%s:", kind);
	int rc;

	*n = 0;
	if (plen >= sizeof(prefix))
		return VAULT_ERR_INVALID;
	k = (struct store_val){ plen, prefix };
	if ((rc = store_cursor_open(txn, STORE_REQUESTS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const uint8_t *p = val.data;
		uint64_t at;

		if (k.len < plen || memcmp(k.data, prefix, plen) != 0)
			break;
		if (val.len < REQUEST_REC_MIN || p[0] != REQUEST_REC_FORMAT)
			continue;
		at = store_get_u64(p + REQUEST_AT);
		if (at >= since_ms && at < until_ms)
			(*n)++;
	}
	store_cursor_close(cur);
	return rc == 0 || rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}
