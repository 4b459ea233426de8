#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/lease.h"
#include "store/meta.h"

#define LEASE_EXPIRES 0			/* offsets of its fields */
#define LEASE_HOLDER 8

struct lease_job {
	const char *holder;
	uint64_t ttl_ms;
	bool release;
	bool held;
	char *other;
};

/* The record's holder is job's, or the record has lapsed or is absent. */
static int
lease_apply(struct store_txn *txn, void *arg)
{
	struct lease_job *job = arg;
	uint8_t rec[LEASE_HOLDER + LEASE_HOLDER_MAX];
	size_t hlen = strlen(job->holder), olen;
	uint64_t now = store_now_ms();
	struct store_val v;
	bool mine = false, lapsed = true;
	int r;

	if (hlen == 0 || hlen > LEASE_HOLDER_MAX)
		abort();		/* the caller's name: config checks it */
	job->held = false;
	if ((r = meta_get(txn, META_LEASE_MAINTENANCE, 0, &v)) != 0 &&
	    r != VAULT_ERR_NOT_FOUND)
		return r;
	if (r == 0 && v.len > LEASE_HOLDER &&
	    v.len <= LEASE_HOLDER + LEASE_HOLDER_MAX) {
		olen = v.len - LEASE_HOLDER;
		mine = olen == hlen && memcmp((const uint8_t *)v.data +
		    LEASE_HOLDER, job->holder, hlen) == 0;
		lapsed = store_get_u64(v.data) <= now;
		if (job->other != NULL && !mine && !lapsed) {
			memcpy(job->other, (const uint8_t *)v.data + LEASE_HOLDER,
			    olen);
			job->other[olen] = '\0';
		}
	}
	if (job->release)
		return mine ? meta_del(txn, META_LEASE_MAINTENANCE, 0) : 0;
	if (!mine && !lapsed)
		return 0;
	store_put_u64(rec + LEASE_EXPIRES, now + job->ttl_ms);
	memcpy(rec + LEASE_HOLDER, job->holder, hlen);
	if ((r = meta_put(txn, META_LEASE_MAINTENANCE, 0, rec,
	    LEASE_HOLDER + hlen)) != 0)
		return r;
	job->held = true;
	return 0;
}

int
lease_take(struct vault *v, const char *holder, uint64_t ttl_ms, bool *held,
    char *other)
{
	struct lease_job job = { holder, ttl_ms, false, false, other };
	int r;

	other[0] = '\0';
	/* Committed before it returns; a crash that loses it only lapses it. */
	r = writer_submit_lazy(v->wr, lease_apply, &job);
	*held = r == 0 && job.held;
	return r;
}

int
lease_release(struct vault *v, const char *holder)
{
	struct lease_job job = { holder, 0, true, false, NULL };

	return writer_submit(v->wr, lease_apply, &job);
}

/* ------------------------------------------------ a named replica's claim */

/* A replica's presence record: its expiry (ms), then its process nonce. */
#define PRESENCE_EXPIRES 0
#define PRESENCE_NONCE 8
#define PRESENCE_REC (PRESENCE_NONCE + PRESENCE_NONCE_BYTES)

struct presence_job {
	const char *name;
	const uint8_t *nonce;
	uint64_t ttl_ms;
	bool release;
	bool ours;
};

static int
presence_apply(struct store_txn *txn, void *arg)
{
	struct presence_job *job = arg;
	uint8_t rec[PRESENCE_REC];
	uint64_t now = store_now_ms();
	struct store_val v;
	bool mine = false, lapsed = true;
	int r;

	job->ours = false;
	r = meta_get_named(txn, META_REPLICA_OF, job->name, &v);
	if (r != 0 && r != VAULT_ERR_NOT_FOUND)
		return r;
	if (r == 0 && v.len == PRESENCE_REC) {
		mine = sodium_memcmp((const uint8_t *)v.data + PRESENCE_NONCE,
		    job->nonce, PRESENCE_NONCE_BYTES) == 0;
		lapsed = store_get_u64((const uint8_t *)v.data +
		    PRESENCE_EXPIRES) <= now;
	}
	if (job->release)
		return mine ? meta_del_named(txn, META_REPLICA_OF, job->name) : 0;
	if (!mine && !lapsed)
		return 0;
	store_put_u64(rec + PRESENCE_EXPIRES, now + job->ttl_ms);
	memcpy(rec + PRESENCE_NONCE, job->nonce, PRESENCE_NONCE_BYTES);
	if ((r = meta_put_named(txn, META_REPLICA_OF, job->name, rec,
	    sizeof(rec))) != 0)
		return r;
	job->ours = true;
	return 0;
}

int
presence_claim(struct vault *v, const char *name,
    const uint8_t nonce[PRESENCE_NONCE_BYTES], uint64_t ttl_ms, bool *ours)
{
	struct presence_job job = { name, nonce, ttl_ms, false, false };
	int r = writer_submit_lazy(v->wr, presence_apply, &job);

	*ours = r == 0 && job.ours;
	return r;
}

int
presence_release(struct vault *v, const char *name,
    const uint8_t nonce[PRESENCE_NONCE_BYTES])
{
	struct presence_job job = { name, nonce, 0, true, false };

	return writer_submit(v->wr, presence_apply, &job);
}
