#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "audit/journal.h"
#include "engine/stats.h"
#include "util/timeutil.h"

struct vault_stats_cache {
	pthread_mutex_t mu;		/* one scrape refreshes at a time */
	int refresh_ms;
	long long at_ms;		/* monotonic; 0: never counted */
	uint32_t *versions;		/* n versions and their DEK counts */
	uint64_t *deks;
	size_t n;
};

int
vault_stats_cache_new(struct vault_stats_cache **out, int refresh_ms)
{
	struct vault_stats_cache *c;

	if ((*out = c = calloc(1, sizeof(*c))) == NULL)
		return VAULT_ERR_NOMEM;
	pthread_mutex_init(&c->mu, NULL);
	c->refresh_ms = refresh_ms;
	return 0;
}

void
vault_stats_cache_free(struct vault_stats_cache *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->mu);
	free(c->versions);
	free(c->deks);
	free(c);
}

/* Keeps the counts just made (ks->deks) for the next scrapes. */
static int
cache_store(struct vault_stats_cache *c, const struct key_status *ks)
{
	uint32_t *versions = calloc(ks->n + 1, sizeof(*versions));
	uint64_t *deks = calloc(ks->n + 1, sizeof(*deks));

	if (versions == NULL || deks == NULL) {
		free(versions);
		free(deks);
		return VAULT_ERR_NOMEM;
	}
	for (size_t i = 0; i < ks->n; i++) {
		versions[i] = ks->vs[i].version;
		deks[i] = ks->deks[i];
	}
	free(c->versions);
	free(c->deks);
	c->versions = versions;
	c->deks = deks;
	c->n = ks->n;
	c->at_ms = time_monotonic_ms();
	return 0;
}

/* The cached counts into ks->deks; a version new since then counts 0. */
static void
cache_load(const struct vault_stats_cache *c, struct key_status *ks)
{
	for (size_t i = 0; i < ks->n; i++)
		for (size_t j = 0; j < c->n; j++)
			if (c->versions[j] == ks->vs[i].version)
				ks->deks[i] = c->deks[j];
}

/* The key status in txn, counting DEKs only when the cache is stale. */
static int
read_keys(struct vault *v, struct vault_stats_cache *c, struct store_txn *txn,
    struct vault_stats *out)
{
	long long now = time_monotonic_ms();
	bool due;
	int r;

	pthread_mutex_lock(&c->mu);
	due = c->at_ms == 0 || now - c->at_ms >= c->refresh_ms;
	if ((r = rotation_key_status_txn(v, txn, due, &out->keys)) != 0)
		goto out;
	if (due && (r = cache_store(c, &out->keys)) != 0)
		goto out;
	if (!due)
		cache_load(c, &out->keys);
	out->deks_age_s = (double)(time_monotonic_ms() - c->at_ms) / 1000.0;
out:
	pthread_mutex_unlock(&c->mu);
	return r;
}

int
vault_stats_read(struct vault *v, struct vault_stats_cache *c,
    struct vault_stats *out)
{
	struct store_txn *txn = NULL;
	size_t consumers = 0, events = 0;
	int r;

	memset(out, 0, sizeof(*out));
	out->store_failed = store_failed(v->store);
	out->store_refusing = store_refusing(v->store);
	out->audit_broken = v->audit.broken != 0;
	writer_metrics(v->wr, &out->writer);
	if (v->audit.jn != NULL)
		out->journal_backlog = journal_backlog(v->audit.jn);
	if ((r = store_usage(v->store, &out->usage)) != 0)
		return r;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((r = store_count(txn, STORE_CONSUMERS, &consumers)) != 0 ||
	    (r = store_count(txn, STORE_LEDGER, &events)) != 0 ||
	    (r = read_keys(v, c, txn, out)) != 0)
		goto out;
	out->consumers = consumers;
	out->ledger_events = events;
	out->audit_anomalies = atomic_load(&v->audit_anomalies);
	out->drop_suppressed = atomic_load(&v->drop_suppressed);
	out->drop_indexed = atomic_load(&v->drop_indexed);
	out->drop_index_state = atomic_load(&v->drop_index_state);
out:
	store_read_end(txn);
	return r;
}

void
vault_stats_clear(struct vault_stats *s)
{
	key_status_clear(&s->keys);
}
