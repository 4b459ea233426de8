#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "engine/replica.h"
#include "util/log.h"
#include "util/timeutil.h"

struct replica {
	struct vault *v;
	char id[LEASE_HOLDER_MAX + 1];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping, started;
	atomic_bool held;
	/* Monotonic ms until which the lease is surely ours. */
	atomic_ullong held_until;
	atomic_ullong takeovers;
	/* replica_name on PostgreSQL: claimed in the store (lease.h). */
	const char *name;
	uint8_t nonce[PRESENCE_NONCE_BYTES];
	bool shared;			/* other processes change the keys */
	bool name_lost;
	bool refresh_failed;		/* logged once until it works again */
	bool renew_failed;
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
refresh_keys(struct replica *rp)
{
	int r = keyring_refresh(rp->v->kr);

	if (r != 0 && !rp->refresh_failed)
		log_warn("cannot bring the master keys up to date with the store "
		    "(%s); retrying every second", vault_strerror(r));
	else if (r == 0 && rp->refresh_failed)
		log_info("the master keys are up to date with the store again");
	rp->refresh_failed = r != 0;
}

static void
renew_lease(struct replica *rp)
{
	char other[LEASE_HOLDER_MAX + 1];
	uint64_t before = mono_ms();
	bool was = atomic_load(&rp->held), held;
	int r;

	/*
	 * A renewal the store refused changes nothing here: the lease stays
	 * ours until held_until, and lapses after it unless one succeeds.
	 */
	if ((r = lease_take(rp->v, rp->id, REPLICA_LEASE_MS, &held, other)) != 0) {
		if (!rp->renew_failed)
			log_warn("replica %s cannot take or renew the maintenance "
			    "lease (%s); retrying every second", rp->id,
			    vault_strerror(r));
		rp->renew_failed = true;
		return;
	}
	rp->renew_failed = false;
	/* Ours until its expiry, less a second for a slow clock or commit. */
	if (held)
		atomic_store(&rp->held_until, before + REPLICA_LEASE_MS - 1000);
	atomic_store(&rp->held, held);
	if (held && !was) {
		atomic_fetch_add(&rp->takeovers, 1);
		log_info("replica %s holds the maintenance lease: it runs the "
		    "janitor, rotation resumption and shred epochs", rp->id);
	} else if (!held && was) {
		log_warn("replica %s lost the maintenance lease to replica %s",
		    rp->id, other);
	}
}

/*
 * Renews the claim on the replica's name; false when another running
 * process holds it (then this one must not act as that replica).
 */
static bool
renew_name(struct replica *rp)
{
	bool ours;

	if (rp->name == NULL)
		return true;
	if (presence_claim(rp->v, rp->name, rp->nonce, REPLICA_LEASE_MS,
	    &ours) != 0)
		return true;	/* the store refused: the lease's own rules apply */
	if (!ours && !rp->name_lost)
		log_error("another running vaultd claims replica_name \"%s\" "
		    "on this store: every replica needs a name of its own; this "
		    "one gives up the maintenance lease", rp->name);
	rp->name_lost = !ours;
	return ours;
}

static void
tick(struct replica *rp)
{
	if (rp->shared)
		refresh_keys(rp);
	if (renew_name(rp)) {
		renew_lease(rp);
	} else {
		atomic_store(&rp->held, false);
		atomic_store(&rp->held_until, 0);
	}
}

/*
 * At start: claims the name, waiting out the claim of a process that died
 * (it lapses within REPLICA_LEASE_MS); a claim still renewed after that is
 * another running replica's, and this one is refused.
 */
static int
claim_name(struct replica *rp)
{
	uint64_t deadline = mono_ms() + REPLICA_LEASE_MS + 2000;
	bool ours;
	int r;

	for (;;) {
		if ((r = presence_claim(rp->v, rp->name, rp->nonce,
		    REPLICA_LEASE_MS, &ours)) != 0) {
			log_error("cannot claim replica_name \"%s\" in the store "
			    "(%s)", rp->name, vault_strerror(r));
			return r;
		}
		if (ours)
			return 0;
		if (mono_ms() >= deadline) {
			log_error("replica_name \"%s\" is in use by another "
			    "running vaultd on this store: every replica needs a "
			    "name of its own (docs/config.md); refusing to start",
			    rp->name);
			return VAULT_ERR_EXISTS;
		}
		struct timespec ts = { 0, 250 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static void *
replica_main(void *arg)
{
	struct replica *rp = arg;
	struct timespec ts;

	pthread_setname_np(pthread_self(), "vaultd-replica");
	pthread_mutex_lock(&rp->mu);
	while (!rp->stopping) {
		ts = time_after_ms(REPLICA_TICK_MS);
		pthread_cond_timedwait(&rp->cv, &rp->mu, &ts);
		if (rp->stopping)
			break;
		pthread_mutex_unlock(&rp->mu);
		tick(rp);
		pthread_mutex_lock(&rp->mu);
	}
	pthread_mutex_unlock(&rp->mu);
	return NULL;
}

int
replica_start(struct replica **out, struct vault *v)
{
	struct replica *rp;
	uint8_t rnd[8];
	int r;

	*out = NULL;
	if ((rp = calloc(1, sizeof(*rp))) == NULL)
		return VAULT_ERR_NOMEM;
	rp->v = v;
	rp->shared = keyring_shared(v->kr);
	if (v->cfg->replica_name != NULL) {
		snprintf(rp->id, sizeof(rp->id), "%s", v->cfg->replica_name);
	} else {
		randombytes_buf(rnd, sizeof(rnd));
		memcpy(rp->id, "node-", 5);
		sodium_bin2hex(rp->id + 5, sizeof(rp->id) - 5, rnd, sizeof(rnd));
	}
	pthread_mutex_init(&rp->mu, NULL);
	pthread_cond_init(&rp->cv, NULL);
	/* Named replicas on PostgreSQL (LMDB keeps its behaviour). */
	if (v->cfg->replica_name != NULL && v->cfg->store_backend != NULL &&
	    strcmp(v->cfg->store_backend, "postgresql") == 0) {
		rp->name = v->cfg->replica_name;
		randombytes_buf(rp->nonce, sizeof(rp->nonce));
		if ((r = claim_name(rp)) != 0) {
			pthread_cond_destroy(&rp->cv);
			pthread_mutex_destroy(&rp->mu);
			free(rp);
			return r;
		}
	}
	tick(rp);
	if (!atomic_load(&rp->held))
		log_info("replica %s: another replica holds the maintenance lease",
		    rp->id);
	if (pthread_create(&rp->thread, NULL, replica_main, rp) != 0) {
		replica_stop(rp);
		return VAULT_ERR_INTERNAL;
	}
	rp->started = true;
	*out = rp;
	return 0;
}

void
replica_stop(struct replica *rp)
{
	if (rp == NULL)
		return;
	if (rp->started) {
		pthread_mutex_lock(&rp->mu);
		rp->stopping = true;
		pthread_cond_signal(&rp->cv);
		pthread_mutex_unlock(&rp->mu);
		pthread_join(rp->thread, NULL);
	}
	/* Another replica takes over at once instead of after the expiry. */
	if (atomic_load(&rp->held) && lease_release(rp->v, rp->id) != 0)
		log_warn("cannot give up the maintenance lease; it lapses in %d ms",
		    REPLICA_LEASE_MS);
	if (rp->name != NULL && !rp->name_lost &&
	    presence_release(rp->v, rp->name, rp->nonce) != 0)
		log_warn("cannot give up the claim on replica_name \"%s\"; it "
		    "lapses in %d ms", rp->name, REPLICA_LEASE_MS);
	pthread_cond_destroy(&rp->cv);
	pthread_mutex_destroy(&rp->mu);
	free(rp);
}

bool
replica_maintains(const struct replica *rp)
{
	if (rp == NULL)
		return true;
	return atomic_load(&rp->held) &&
	    mono_ms() < atomic_load(&rp->held_until);
}

const char *
replica_id(const struct replica *rp)
{
	return rp != NULL ? rp->id : "";
}

unsigned long long
replica_takeovers(const struct replica *rp)
{
	return rp != NULL ? atomic_load(&rp->takeovers) : 0;
}
