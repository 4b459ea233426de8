/*
 * The CCPA request records: one per request to know, opt out or delete,
 * kept for the retention period (janitor.c) as the proof a request was
 * made and answered. Deletion receipts (deletion.c) share the key space
 * and the record's head.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/requests.h"

int
requests_log_txn(struct vault *v, MDB_txn *txn, const char *kind,
    const uint8_t *ref)
{
	char key[96], hex[2 * CRYPTO_REF_BYTES + 1];
	uint8_t rec[1 + 8 + CRYPTO_REF_BYTES];
	struct timespec ts;
	MDB_val k, val;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	crypto_hex(ref, CRYPTO_REF_BYTES, hex);
	snprintf(key, sizeof(key), "%s:%s:%020lld%09ld", kind, hex,
	    (long long)ts.tv_sec, ts.tv_nsec);
	rec[0] = REQUEST_REC_FORMAT;
	store_put_u64(rec + REQUEST_AT, store_now_ms());
	memcpy(rec + REQUEST_REF, ref, CRYPTO_REF_BYTES);
	k = (MDB_val){ strlen(key), key };
	val = (MDB_val){ sizeof(rec), rec };
	rc = mdb_put(txn, v->store->requests, &k, &val, 0);
	return rc == 0 ? 0 : store_err(v->store, rc, "put request record");
}

/* Where a sweep of the request records stands between transactions. */
struct requests_sweep {
	char key[512];		/* the next record to look at (LMDB keys: <= 511) */
	size_t len;		/* 0: the first record */
	bool end;		/* the last transaction reached the end */
};

/*
 * In a write txn: looks at up to max request records from sw's position,
 * drops those older than before_ms, and moves sw on.
 */
static int
requests_expire_txn(struct vault *v, MDB_txn *txn, uint64_t before_ms,
    size_t max, struct requests_sweep *sw, size_t *expired)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { sw->len, sw->key }, val;
	size_t seen = 0;
	int rc;

	*expired = 0;
	if ((rc = mdb_cursor_open(txn, v->store->requests, &cur)) != 0)
		return store_err(v->store, rc, "open cursor");
	for (rc = mdb_cursor_get(cur, &k, &val, sw->len > 0 ? MDB_SET_RANGE :
	    MDB_FIRST); rc == 0 && seen < max; seen++) {
		const uint8_t *p = val.mv_data;

		if (val.mv_size >= REQUEST_REF && p[0] == REQUEST_REC_FORMAT &&
		    store_get_u64(p + REQUEST_AT) < before_ms) {
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			(*expired)++;
			rc = mdb_cursor_get(cur, &k, &val, MDB_GET_CURRENT);
			if (rc == EINVAL)
				rc = MDB_NOTFOUND;
			continue;
		}
		rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT);
	}
	/* Stopped at max: the record under the cursor is where to go on. */
	if (rc == 0 && k.mv_size <= sizeof(sw->key)) {
		memcpy(sw->key, k.mv_data, k.mv_size);
		sw->len = k.mv_size;
	} else if (rc == 0) {
		rc = MDB_CORRUPTED;	/* longer than any LMDB key */
	}
	sw->end = rc == MDB_NOTFOUND;
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : store_err(v->store, rc,
	    "expire request records");
}

struct requests_job {
	struct vault *v;
	uint64_t before;
	size_t per_txn;
	struct requests_sweep sw;
	size_t done;
};

static int
requests_apply(MDB_txn *txn, void *arg)
{
	struct requests_job *job = arg;

	return requests_expire_txn(job->v, txn, job->before, job->per_txn,
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
