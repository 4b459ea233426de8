#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <time.h>

#include "util/crashpoint.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "store/backend.h"
#include "store/writer.h"

#define LAZY_FLUSH_MS 20
#define LAZY_SPINS 200

struct write_req {
	writer_fn fn;
	void *arg;
	writer_fn hook;			/* runs after fn in the same nested txn */
	void *hook_arg;
	bool lazy;			/* no fsync needed before acknowledging */
	int result;
	atomic_bool done;
	struct write_req *next;
};

struct writer {
	struct store *st;
	pthread_t thread, flusher;
	pthread_mutex_t mu;
	pthread_cond_t work_cv;		/* the queue got a request, or stop */
	pthread_cond_t done_cv;		/* a group finished */
	struct write_req *head, *tail;
	bool stopping;
	/* A group is being applied, by the writer thread or a submitter. */
	atomic_bool busy;
	unsigned lazy_sleepers;		/* lazy submitters asleep on done_cv */
	/* Lazy commits so far, and how many of them are known to be on disk. */
	unsigned long long lazy_seq, synced_seq;
	pthread_cond_t flush_cv;		/* a lazy commit happened, or stop */
	bool flush_idle;			/* the flusher waits for a lazy commit */
	bool flush_stop;			/* set once the writer thread ended */
	unsigned max_group;
	unsigned long long groups, requests;
	/* For writer_metrics: written under mu, read without it (relaxed). */
	unsigned long long fsyncs, group_size[WRITER_GROUP_BUCKETS + 1];
	writer_fn prelude;			/* see writer_set_prelude */
	void (*prelude_done)(void *arg, bool committed);
	void *prelude_arg;
};

/* Applies each request of the group in a nested transaction, then commits. */
enum committed { COMMITTED_NONE, COMMITTED_LAZY, COMMITTED_DURABLE };

static enum committed
run_group(struct writer *w, struct write_req *group)
{
	struct store_txn *txn = NULL, *child;
	bool lazy = true, single = group->next == NULL;
	int r;

	for (struct write_req *q = group; q != NULL; q = q->next)
		lazy = lazy && q->lazy;

	if ((r = store_write_begin(w->st, &txn)) == 0 && w->prelude != NULL &&
	    (r = w->prelude(txn, w->prelude_arg)) != 0) {
		store_abort(txn);
		txn = NULL;
	}
	for (struct write_req *q = group; q != NULL; q = q->next) {
		if (r != 0) {
			q->result = r;
			continue;
		}
		/* Alone in its group, a request needs no nested transaction. */
		if (single)
			child = txn;
		else if ((q->result = store_nested_begin(txn, &child)) != 0)
			continue;
		q->result = q->fn(child, q->arg);
		if (q->result == 0 && q->hook != NULL)
			q->result = q->hook(child, q->hook_arg);
		if (single)
			break;
		if (q->result == 0)
			q->result = store_commit(child, true);
		else
			store_abort(child);
	}
	if (single && txn != NULL && group->result != 0) {
		store_abort(txn);	/* the request failed: nothing of it stays */
		txn = NULL;
	}
	/*
	 * A group of lazy requests only is committed without fsync; the next
	 * durable commit, or the idle flush within LAZY_FLUSH_MS, syncs it.
	 */
	if (txn != NULL)
		VAULT_CRASH_POINT("writer.before_commit");
	if (txn != NULL && (r = store_commit(txn, !lazy)) != 0) {
		for (struct write_req *q = group; q != NULL; q = q->next)
			q->result = r;
	}
	if (txn != NULL && r == 0)
		VAULT_CRASH_POINT("writer.after_commit");	/* none acknowledged */
	if (w->prelude_done != NULL)
		w->prelude_done(w->prelude_arg, txn != NULL && r == 0);
	if (txn == NULL || r != 0)
		return COMMITTED_NONE;
	return lazy ? COMMITTED_LAZY : COMMITTED_DURABLE;
}

static void
count(unsigned long long *c, unsigned long long n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Bucket b holds groups of at most 2^b requests; the last, the rest. */
static unsigned
group_bucket(unsigned n)
{
	unsigned b = 0;

	while (b < WRITER_GROUP_BUCKETS && n > (1u << b))
		b++;
	return b;
}

/*
 * The flusher: within LAZY_FLUSH_MS of a lazy commit, syncs the data file,
 * off the writer thread, so no request ever waits behind this fsync.
 */
static void *
flusher_main(void *arg)
{
	struct writer *w = arg;
	unsigned long long target;

	pthread_setname_np(pthread_self(), "vaultd-flusher");

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct timespec ts;

		w->flush_idle = true;
		while (w->lazy_seq == w->synced_seq && !w->flush_stop)
			pthread_cond_wait(&w->flush_cv, &w->mu);
		w->flush_idle = false;
		if (w->lazy_seq == w->synced_seq)
			break;
		ts = time_after_ms(LAZY_FLUSH_MS);
		while (!w->flush_stop &&
		    pthread_cond_timedwait(&w->flush_cv, &w->mu, &ts) == 0)
			;
		target = w->lazy_seq;
		pthread_mutex_unlock(&w->mu);
		if (store_sync(w->st) != 0)
			log_error("cannot flush the store to disk");
		pthread_mutex_lock(&w->mu);
		count(&w->fsyncs, 1);
		if (target > w->synced_seq)
			w->synced_seq = target;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static bool
writer_idle(struct writer *w)
{
	return !atomic_load_explicit(&w->busy, memory_order_relaxed);
}

/* Books a group's commit and marks its requests done; under w->mu. */
static void
finish_group(struct writer *w, struct write_req *group,
    enum committed committed, unsigned n)
{
	/* A durable commit's fsync covered every lazy commit before it. */
	if (committed == COMMITTED_LAZY) {
		w->lazy_seq++;
		/* Only the first lazy commit of a window wakes the flusher. */
		if (w->flush_idle)
			pthread_cond_signal(&w->flush_cv);
	} else if (committed == COMMITTED_DURABLE) {
		w->synced_seq = w->lazy_seq;
		count(&w->fsyncs, 1);	/* the commit's own */
	}
	count(&w->groups, 1);
	count(&w->requests, n);
	count(&w->group_size[group_bucket(n)], 1);
	atomic_store_explicit(&w->busy, false, memory_order_relaxed);
	for (struct write_req *q = group; q != NULL; q = q->next)
		atomic_store_explicit(&q->done, true, memory_order_release);
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	pthread_setname_np(pthread_self(), "vaultd-writer");

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct write_req *group, *last;
		enum committed committed;
		unsigned n = 1;

		while (!writer_idle(w) || (w->head == NULL && !w->stopping))
			pthread_cond_wait(&w->work_cv, &w->mu);
		if (w->head == NULL)
			break;
		atomic_store_explicit(&w->busy, true, memory_order_relaxed);
		group = last = w->head;
		while (last->next != NULL && n < w->max_group) {
			last = last->next;
			n++;
		}
		w->head = last->next;
		if (w->head == NULL)
			w->tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&w->mu);

		committed = run_group(w, group);

		pthread_mutex_lock(&w->mu);
		finish_group(w, group, committed, n);
		pthread_cond_broadcast(&w->done_cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int
writer_start(struct writer **out, struct store *st, unsigned max_group)
{
	struct writer *w;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return VAULT_ERR_NOMEM;
	w->st = st;
	w->max_group = max_group > 0 ? max_group : 1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work_cv, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	pthread_cond_init(&w->flush_cv, NULL);
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		free(w);
		return VAULT_ERR_INTERNAL;
	}
	if (pthread_create(&w->flusher, NULL, flusher_main, w) != 0) {
		log_error("cannot start the flusher thread");
		abort();
	}
	*out = w;
	return 0;
}

void
writer_set_prelude(struct writer *w, writer_fn fn,
    void (*done)(void *arg, bool committed), void *arg)
{
	w->prelude = fn;
	w->prelude_done = done;
	w->prelude_arg = arg;
}

static _Thread_local struct {
	writer_fn fn;
	void *arg;
	bool fired;
} hook;

void
writer_hook_arm(writer_fn fn, void *arg)
{
	hook.fn = fn;
	hook.arg = arg;
	hook.fired = false;
}

void
writer_hook_disarm(void)
{
	hook.fn = NULL;
	hook.arg = NULL;
}

bool
writer_hook_fired(void)
{
	return hook.fired;
}

static int submit(struct writer *w, writer_fn fn, void *arg, bool lazy);

int
writer_submit(struct writer *w, writer_fn fn, void *arg)
{
	return submit(w, fn, arg, false);
}

int
writer_submit_lazy(struct writer *w, writer_fn fn, void *arg)
{
	return submit(w, fn, arg, true);
}

/*
 * Applies own (NULL when it is queued) and the lazy requests at the head of
 * the queue on the calling thread, as one group. Called under w->mu with
 * the writer idle; drops the lock while the group runs.
 */
static void
combine(struct writer *w, struct write_req *own)
{
	struct write_req *group = own, **tailp = own != NULL ? &own->next : &group;
	unsigned n = own != NULL, own_n = n;
	enum committed committed;

	atomic_store_explicit(&w->busy, true, memory_order_relaxed);
	while (w->head != NULL && w->head->lazy && n < w->max_group) {
		struct write_req *r = w->head;

		if ((w->head = r->next) == NULL)
			w->tail = NULL;
		r->next = NULL;
		*tailp = r;
		tailp = &r->next;
		n++;
	}
	pthread_mutex_unlock(&w->mu);
	committed = run_group(w, group);
	pthread_mutex_lock(&w->mu);
	finish_group(w, group, committed, n);
	if (n > own_n)
		pthread_cond_broadcast(&w->done_cv);
	/*
	 * The writer thread waits for busy to clear when it has a durable
	 * request, a lazy request whose submitter gave up spinning, or a stop.
	 */
	if (w->stopping || w->lazy_sleepers > 0 ||
	    (w->head != NULL && !w->head->lazy))
		pthread_cond_signal(&w->work_cv);
}

static int
submit(struct writer *w, writer_fn fn, void *arg, bool lazy)
{
	struct write_req q = { .fn = fn, .arg = arg, .hook = lazy ? NULL : hook.fn,
	    .hook_arg = lazy ? NULL : hook.arg, .lazy = lazy };
	bool slept = false;

	pthread_mutex_lock(&w->mu);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		return VAULT_ERR_UNAVAILABLE;
	}
	/*
	 * A lazy request waits for no fsync, so handing it to the writer
	 * thread and back would be most of its latency: with the writer idle,
	 * the calling thread applies it, with any lazy requests queued.
	 */
	if (lazy && writer_idle(w) && (w->head == NULL || w->head->lazy)) {
		combine(w, &q);
		pthread_mutex_unlock(&w->mu);
		return q.result;
	}
	if (w->tail != NULL)
		w->tail->next = &q;
	else
		w->head = &q;
	w->tail = &q;
	if (!lazy) {
		pthread_cond_signal(&w->work_cv);
	} else {
		/*
		 * The writer is busy for tens of microseconds, or for an fsync:
		 * yield rather than sleep, and apply the queued lazy requests
		 * here once it is idle. Only a waiter that gives up wakes the
		 * writer thread.
		 */
		pthread_mutex_unlock(&w->mu);
		for (int i = 0; i < LAZY_SPINS && !atomic_load_explicit(&q.done,
		    memory_order_acquire); i++) {
			sched_yield();
			if (!writer_idle(w))
				continue;
			pthread_mutex_lock(&w->mu);
			if (!atomic_load_explicit(&q.done, memory_order_acquire) &&
			    writer_idle(w) && w->head != NULL && w->head->lazy)
				combine(w, NULL);
			pthread_mutex_unlock(&w->mu);
		}
		pthread_mutex_lock(&w->mu);
		if ((slept = !atomic_load_explicit(&q.done,
		    memory_order_acquire))) {
			w->lazy_sleepers++;
			pthread_cond_signal(&w->work_cv);
		}
	}
	while (!atomic_load_explicit(&q.done, memory_order_acquire))
		pthread_cond_wait(&w->done_cv, &w->mu);
	if (slept)
		w->lazy_sleepers--;
	pthread_mutex_unlock(&w->mu);
	if (q.hook != NULL && q.result == 0) {
		hook.fired = true;
		writer_hook_disarm();
	}
	return q.result;
}

void
writer_stats(const struct writer *w, unsigned long long *groups,
    unsigned long long *requests)
{
	*groups = w->groups;
	*requests = w->requests;
}

void
writer_metrics(const struct writer *w, struct writer_metrics *out)
{
	out->groups = __atomic_load_n(&w->groups, __ATOMIC_RELAXED);
	out->requests = __atomic_load_n(&w->requests, __ATOMIC_RELAXED);
	out->fsyncs = __atomic_load_n(&w->fsyncs, __ATOMIC_RELAXED);
	for (unsigned b = 0; b <= WRITER_GROUP_BUCKETS; b++)
		out->group_size[b] = __atomic_load_n(&w->group_size[b],
		    __ATOMIC_RELAXED);
}

void
writer_stop(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	log_info("%llu requests applied in %llu groups", w->requests,
	    w->groups);
	/* Now nothing commits any more: the flusher's last sync covers all. */
	pthread_mutex_lock(&w->mu);
	w->flush_stop = true;
	pthread_cond_signal(&w->flush_cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->flusher, NULL);
	pthread_cond_destroy(&w->work_cv);
	pthread_cond_destroy(&w->done_cv);
	pthread_cond_destroy(&w->flush_cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
