#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <time.h>

#include "log.h"
#include "timeutil.h"
#include "writer.h"

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
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work_cv;		/* the queue got a request, or stop */
	pthread_cond_t done_cv;		/* a group finished */
	struct write_req *head, *tail;
	bool stopping;
	bool unsynced;			/* lazy groups committed since the last fsync */
	unsigned max_group;
	unsigned long long groups, requests;
};

/* Applies each request of the group in a nested transaction, then commits. */
static void
run_group(struct writer *w, struct write_req *group)
{
	MDB_txn *txn = NULL, *child;
	bool lazy = true, single = group->next == NULL;
	int rc, r = 0;

	for (struct write_req *q = group; q != NULL; q = q->next)
		lazy = lazy && q->lazy;

	if (w->st->failed) {
		r = VAULT_ERR_UNAVAILABLE;
	} else if ((rc = mdb_txn_begin(w->st->env, NULL, 0, &txn)) != 0) {
		r = store_err(w->st, rc, "begin write");
	}
	for (struct write_req *q = group; q != NULL; q = q->next) {
		if (r != 0) {
			q->result = r;
			continue;
		}
		/* Alone in its group, a request needs no nested transaction. */
		if (single)
			child = txn;
		else if ((rc = mdb_txn_begin(w->st->env, txn, 0, &child)) != 0) {
			q->result = store_err(w->st, rc, "begin nested write");
			continue;
		}
		q->result = q->fn(child, q->arg);
		if (q->result == 0 && q->hook != NULL)
			q->result = q->hook(child, q->hook_arg);
		if (single)
			break;
		if (q->result == 0 && (rc = mdb_txn_commit(child)) != 0)
			q->result = store_err(w->st, rc, "commit nested write");
		else if (q->result != 0)
			mdb_txn_abort(child);
	}
	if (single && txn != NULL && group->result != 0) {
		mdb_txn_abort(txn);	/* the request failed: nothing of it stays */
		txn = NULL;
	}
	/*
	 * A group of lazy requests only is committed without fsync; the next
	 * durable commit, or the idle flush within LAZY_FLUSH_MS, syncs it.
	 */
	if (txn != NULL && lazy)
		mdb_env_set_flags(w->st->env, MDB_NOSYNC, 1);
	if (txn != NULL && (rc = mdb_txn_commit(txn)) != 0) {
		r = store_err(w->st, rc, "commit group");
		for (struct write_req *q = group; q != NULL; q = q->next)
			q->result = r;
	}
	if (txn != NULL && lazy)
		mdb_env_set_flags(w->st->env, MDB_NOSYNC, 0);
	/* A durable commit flushed everything before it; a lazy one did not. */
	if (txn != NULL && lazy)
		w->unsynced = true;
	else if (txn != NULL && r == 0)
		w->unsynced = false;
}

/* Called with w->mu held while idle: flushes lazy commits. */
static void
flush_idle(struct writer *w)
{
	struct timespec ts = time_after_ms(LAZY_FLUSH_MS);

	if (pthread_cond_timedwait(&w->work_cv, &w->mu, &ts) == 0 || w->head != NULL)
		return;
	pthread_mutex_unlock(&w->mu);
	if (mdb_env_sync(w->st->env, 1) != 0)
		log_error("cannot flush the store to disk");
	pthread_mutex_lock(&w->mu);
	w->unsynced = false;
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct write_req *group, *last;
		unsigned n = 1;

		while (w->head == NULL && !w->stopping) {
			if (w->unsynced)
				flush_idle(w);
			else
				pthread_cond_wait(&w->work_cv, &w->mu);
		}
		if (w->head == NULL) {
			if (w->unsynced)
				mdb_env_sync(w->st->env, 1);
			break;
		}
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

		run_group(w, group);

		pthread_mutex_lock(&w->mu);
		w->groups++;
		w->requests += n;
		for (struct write_req *q = group; q != NULL; q = q->next)
			atomic_store_explicit(&q->done, true, memory_order_release);
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
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		free(w);
		return VAULT_ERR_INTERNAL;
	}
	*out = w;
	return 0;
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

static int
submit(struct writer *w, writer_fn fn, void *arg, bool lazy)
{
	struct write_req q = { .fn = fn, .arg = arg, .hook = lazy ? NULL : hook.fn,
	    .hook_arg = lazy ? NULL : hook.arg, .lazy = lazy };

	pthread_mutex_lock(&w->mu);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		return VAULT_ERR_UNAVAILABLE;
	}
	if (w->tail != NULL)
		w->tail->next = &q;
	else
		w->head = &q;
	w->tail = &q;
	pthread_cond_signal(&w->work_cv);
	if (lazy) {
		/*
		 * A lazy request is done in tens of microseconds: yield rather
		 * than sleep, which would add a wake-up to every read's latency.
		 */
		pthread_mutex_unlock(&w->mu);
		for (int i = 0; i < LAZY_SPINS && !atomic_load_explicit(&q.done,
		    memory_order_acquire); i++)
			sched_yield();
		pthread_mutex_lock(&w->mu);
	}
	while (!atomic_load_explicit(&q.done, memory_order_acquire))
		pthread_cond_wait(&w->done_cv, &w->mu);
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
writer_stop(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->work_cv);
	pthread_cond_destroy(&w->done_cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
