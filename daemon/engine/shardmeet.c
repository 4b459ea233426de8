#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/shardmeet.h"
#include "util/timeutil.h"

enum { SHARD_FREE, SHARD_TAKEN, SHARD_POSTED };

struct shardmeet {
	struct shardmeet *next;
	const void *owner;
	uint8_t key[SHARDMEET_KEY_BYTES];
	long long opened_ms;		/* monotonic */
	uint32_t count, refs;
	uint8_t *state;			/* per shard: SHARD_* */
	struct shardmeet_part *parts;	/* per shard, once posted */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;		/* on the monotonic clock */
static pthread_once_t changed_once = PTHREAD_ONCE_INIT;
static struct shardmeet *meets;

static void
changed_init(void)
{
	pthread_condattr_t a;

	if (pthread_condattr_init(&a) != 0 ||
	    pthread_condattr_setclock(&a, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&changed, &a) != 0)
		abort();
	pthread_condattr_destroy(&a);
}

static void
part_free(struct shardmeet_part *p)
{
	if (p->counts != NULL)
		sodium_memzero(p->counts, p->n * sizeof(*p->counts));
	free(p->counts);
	memset(p, 0, sizeof(*p));
}

int
shardmeet_join(const void *owner, const uint8_t key[SHARDMEET_KEY_BYTES],
    uint32_t count, uint32_t index, long long max_age_ms,
    struct shardmeet **out)
{
	long long now = time_monotonic_ms();
	struct shardmeet *m;

	if (index >= count)
		abort();		/* the caller checked the request */
	pthread_once(&changed_once, changed_init);
	pthread_mutex_lock(&lock);
	for (m = meets; m != NULL; m = m->next)
		if (m->owner == owner && m->count == count &&
		    memcmp(m->key, key, SHARDMEET_KEY_BYTES) == 0 &&
		    m->state[index] == SHARD_FREE &&
		    now - m->opened_ms < max_age_ms)
			break;
	if (m == NULL) {
		if ((m = calloc(1, sizeof(*m))) == NULL ||
		    (m->state = calloc(count, sizeof(*m->state))) == NULL ||
		    (m->parts = calloc(count, sizeof(*m->parts))) == NULL) {
			if (m != NULL)
				free(m->state);
			free(m);
			pthread_mutex_unlock(&lock);
			return VAULT_ERR_NOMEM;
		}
		m->owner = owner;
		m->opened_ms = now;
		memcpy(m->key, key, SHARDMEET_KEY_BYTES);
		m->count = count;
		m->next = meets;
		meets = m;
	}
	m->state[index] = SHARD_TAKEN;
	m->refs++;
	pthread_mutex_unlock(&lock);
	*out = m;
	return 0;
}

void
shardmeet_post(struct shardmeet *m, uint32_t index, struct shardmeet_part part)
{
	pthread_mutex_lock(&lock);
	m->parts[index] = part;
	m->state[index] = SHARD_POSTED;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
}

/* Whether a shard other than index is taken and not yet posted. */
static bool
someone_working(const struct shardmeet *m, uint32_t index)
{
	for (uint32_t j = 0; j < m->count; j++)
		if (j != index && m->state[j] == SHARD_TAKEN)
			return true;
	return false;
}

int
shardmeet_wait(struct shardmeet *m, uint32_t index, long long deadline_ms,
    bool (*cancelled)(void *), void *arg)
{
	int r = 0;

	pthread_mutex_lock(&lock);
	while (someone_working(m, index)) {
		long long now = time_monotonic_ms(), until;
		struct timespec ts;

		if (now >= deadline_ms)
			break;
		if (cancelled != NULL && cancelled(arg)) {
			r = VAULT_ERR_CANCELLED;
			break;
		}
		/* Awake at least every 100 ms to see a cancelled call. */
		until = deadline_ms < now + 100 ? deadline_ms : now + 100;
		ts.tv_sec = until / 1000;
		ts.tv_nsec = (until % 1000) * 1000000L;
		pthread_cond_timedwait(&changed, &lock, &ts);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

void
shardmeet_parts(struct shardmeet *m, bool *posted, struct shardmeet_part *parts)
{
	pthread_mutex_lock(&lock);
	for (uint32_t j = 0; j < m->count; j++) {
		posted[j] = m->state[j] == SHARD_POSTED;
		parts[j] = m->parts[j];
	}
	pthread_mutex_unlock(&lock);
}

void
shardmeet_leave(struct shardmeet *m, uint32_t index)
{
	struct shardmeet **pp;

	pthread_mutex_lock(&lock);
	/* A call that leaves without posting frees its shard for another. */
	if (m->state[index] == SHARD_TAKEN)
		m->state[index] = SHARD_FREE;
	pthread_cond_broadcast(&changed);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&lock);
		return;
	}
	for (pp = &meets; *pp != m; pp = &(*pp)->next)
		;
	*pp = m->next;
	pthread_mutex_unlock(&lock);
	for (uint32_t j = 0; j < m->count; j++)
		part_free(&m->parts[j]);
	free(m->parts);
	free(m->state);
	free(m);
}
