#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "engine/consumer.h"
#include "engine/deletion.h"
#include "engine/drop.h"
#include "engine/dropindex.h"
#include "engine/retention.h"
#include "engine/dellog.h"
#include "engine/requests.h"
#include "engine/janitor.h"
#include "engine/replica.h"
#include "util/log.h"
#include "util/timeutil.h"

#define COLLECT_PER_TXN 512
#define EXPIRE_PER_TXN 10000

struct janitor {
	struct vault *v;
	janitor_hook hook;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
};

struct collect_job {
	struct vault *v;
	size_t done;
	bool more;
};

static int
collect_apply(struct store_txn *txn, void *arg)
{
	struct collect_job *job = arg;

	return consumer_collect_txn(job->v, txn, COLLECT_PER_TXN, &job->done,
	    &job->more);
}

struct expire_job {
	struct vault *v;
	uint64_t before;
	size_t done;
	enum ledger_kind kind;
};

static int
expire_apply(struct store_txn *txn, void *arg)
{
	struct expire_job *job = arg;

	return ledger_expire_txn(txn, job->kind, job->before, EXPIRE_PER_TXN,
	    &job->done);
}

static int
expire_dellog_apply(struct store_txn *txn, void *arg)
{
	struct expire_job *job = arg;

	return dellog_expire_txn(txn, job->before, EXPIRE_PER_TXN, &job->done);
}

/* The deletion log lives as long as the deletion receipts (dellog.h). */
static int
expire_dellog(struct vault *v, uint64_t before)
{
	struct expire_job e = { v, before, 0, LEDGER_DELETION };
	int r;

	do {
		if ((r = writer_submit(v->wr, expire_dellog_apply, &e)) != 0)
			return r;
		if (e.done > 0)
			log_info("expired %zu deletion log entries", e.done);
	} while (e.done == EXPIRE_PER_TXN);
	return 0;
}

/*
 * Values past their attribute's retain_days (retention.h): erased hourly,
 * and at the first pass.
 */
static int
expire_values(struct vault *v)
{
	static uint64_t last;
	struct retention_done done;
	uint64_t now = store_now_ms(), deleted;
	int r;

	if (last != 0 && now - last < 3600000ULL)
		return 0;
	last = now;
	if ((r = retention_pass(v, now, &done)) != 0)
		return r;
	return retention_inactive_pass(v, now, &deleted);
}

/* The DROP index of the consumers already stored (drop.h), batch by batch. */
static int
build_drop_index(struct vault *v)
{
	static bool logged;
	bool built;
	int r;

	if ((r = drop_index_build(v, &built)) == 0 && built && !logged &&
	    drop_enabled(v)) {
		log_info("the DROP index is built");
		logged = true;
	}
	return r;
}

/* Request records are kept request_retention_s (24 months); swept hourly. */
static int
expire_requests(struct vault *v)
{
	static uint64_t last;
	uint64_t now = store_now_ms(), keep = (uint64_t)v->cfg->request_retention_s * 1000ULL;
	size_t expired, txns;
	int r;

	if (last != 0 && now - last < 3600000ULL)
		return 0;
	last = now;
	r = requests_expire(v, now > keep ? now - keep : 0, EXPIRE_PER_TXN,
	    &expired, &txns);
	if (expired > 0)
		log_info("expired %zu request records", expired);
	if (r == 0)
		r = expire_dellog(v, now > keep ? now - keep : 0);
	return r;
}

int
janitor_pass(struct vault *v)
{
	struct collect_job c = { v, 0, false };
	struct expire_job e = { v, 0, 0, LEDGER_DELETION };
	uint64_t keep = (uint64_t)v->cfg->ledger_retention_s * 1000ULL;
	uint64_t now = store_now_ms();
	int r;

	do {
		if ((r = writer_submit(v->wr, collect_apply, &c)) != 0)
			return r;
	} while (c.more);
	e.before = now > keep ? now - keep : 0;
	for (e.kind = LEDGER_DELETION; e.kind <= LEDGER_CONSENT; e.kind++) {
		do {
			if ((r = writer_submit(v->wr, expire_apply, &e)) != 0)
				return r;
			if (e.done > 0)
				log_info("expired %zu %s ledger events", e.done,
				    e.kind == LEDGER_DELETION ? "deletion" :
				    "consent");
		} while (e.done == EXPIRE_PER_TXN);
	}
	if ((r = expire_values(v)) != 0 || (r = build_drop_index(v)) != 0)
		return r;
	return expire_requests(v);
}

/*
 * Among replicas on one store, only the maintenance lease's holder runs
 * passes (replica.h). The others look every second (or every interval,
 * when shorter), so a replica that takes the lease over runs its first
 * pass at once, whatever the interval.
 */
static void *
janitor_main(void *arg)
{
	struct janitor *j = arg;
	struct timespec ts;
	long ms = j->v->cfg->janitor_interval_ms;
	long wait = ms < REPLICA_TICK_MS ? ms : REPLICA_TICK_MS;
	struct timespec last = { 0, 0 }, now;
	bool maintained = false, due;

	pthread_setname_np(pthread_self(), "vaultd-janitor");

	pthread_mutex_lock(&j->mu);
	while (!j->stopping) {
		pthread_mutex_unlock(&j->mu);
		clock_gettime(CLOCK_MONOTONIC, &now);
		due = (now.tv_sec - last.tv_sec) * 1000L +
		    (now.tv_nsec - last.tv_nsec) / 1000000L >= ms;
		if (!replica_maintains(j->v->rep)) {
			maintained = false;
		} else if (due || !maintained) {
			maintained = true;
			last = now;
			if (janitor_pass(j->v) != 0)
				log_warn("an upkeep pass failed; retrying later");
			if (j->hook != NULL)
				j->hook(j->v, j->arg);
		}
		pthread_mutex_lock(&j->mu);
		ts = time_after_ms(wait);
		if (!j->stopping)
			pthread_cond_timedwait(&j->cv, &j->mu, &ts);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int
janitor_start(struct janitor **out, struct vault *v, janitor_hook hook,
    void *arg)
{
	struct janitor *j = calloc(1, sizeof(*j));

	*out = NULL;
	if (j == NULL)
		return VAULT_ERR_NOMEM;
	j->v = v;
	j->hook = hook;
	j->arg = arg;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	if (pthread_create(&j->thread, NULL, janitor_main, j) != 0) {
		free(j);
		return VAULT_ERR_INTERNAL;
	}
	*out = j;
	return 0;
}

void
janitor_stop(struct janitor *j)
{
	if (j == NULL)
		return;
	pthread_mutex_lock(&j->mu);
	j->stopping = true;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	pthread_join(j->thread, NULL);
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	free(j);
}
