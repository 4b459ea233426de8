/*
 * The worker pool, and the threads of server streams. A decoded call is
 * queued for the workers, or a stream gets a thread of its own and a
 * stream slot; there the handler runs, its audit entry is written, and the
 * call is finished.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "rpc/call.h"
#include "rpc/ctx.h"
#include "rpc/internal.h"
#include "rpc/streams.h"
#include "rpc/worker.h"
#include "util/log.h"

#define MAX_QUEUED 4096

static void
run_handler(struct rpc_ctx *c)
{
	const struct rpc_audit_sink *sink = c->srv->sink;
	bool armed;
	int r;

	if (c->early_err != 0) {
		r = ctx_audit_now(c, c->early_err);
		call_finish(c, r != 0 ? r : c->early_err);
		return;
	}
	if (rpc_cancelled(c)) {
		call_finish(c, VAULT_ERR_CANCELLED);
		return;
	}
	/* The entry rides along with the handler's first write, if any. */
	if ((armed = ctx_audits_success(c))) {
		ctx_audit_fill(c, "ok");
		sink->arm(c->srv->app, &c->audit);
	}
	r = c->m->handler(c, c->req);
	if (armed && sink->disarm(c->srv->app))
		c->audited = true;
	if (r == 0 && c->m->kind == RPC_UNARY && c->reply == NULL) {
		log_error("%s: handler returned no reply", c->m->path);
		r = VAULT_ERR_INTERNAL;
	}
	if (r == VAULT_ERR_CANCELLED && gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC),
	    c->deadline) > 0)
		r = VAULT_ERR_DEADLINE;
	if (ctx_audit_now(c, r) != 0)
		r = VAULT_ERR_UNAVAILABLE;
	call_finish(c, r);
}

/* Takes w off the idle stack, wherever it is; under srv->mu. */
static void
unidle(struct server *srv, struct worker *w)
{
	struct worker **p = &srv->idle;

	while (*p != w)
		p = &(*p)->next_idle;
	*p = w->next_idle;
	w->idle = false;
}

void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct server *srv = w->srv;

	pthread_setname_np(pthread_self(), "vaultd-worker");

	pthread_mutex_lock(&srv->mu);
	for (;;) {
		struct rpc_ctx *c;

		while (srv->q_head == NULL && !srv->workers_stop) {
			if (!w->idle) {
				w->idle = true;
				w->next_idle = srv->idle;
				srv->idle = w;
			}
			pthread_cond_wait(&w->cv, &srv->mu);
		}
		if (srv->q_head == NULL)
			break;
		if (w->idle)		/* woken spuriously, and found work */
			unidle(srv, w);
		c = srv->q_head;
		srv->q_head = c->next;
		if (srv->q_head == NULL)
			srv->q_tail = NULL;
		srv->q_len--;
		pthread_mutex_unlock(&srv->mu);
		run_handler(c);
		pthread_mutex_lock(&srv->mu);
	}
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

static void *
stream_main(void *arg)
{
	struct rpc_ctx *c = arg;
	struct server *srv = c->srv;

	pthread_setname_np(pthread_self(), "vaultd-stream");

	run_handler(c);
	pthread_mutex_lock(&srv->mu);
	stream_slot_put(c);
	pthread_cond_broadcast(&srv->state_cv);
	pthread_mutex_unlock(&srv->mu);
	call_unref(c);
	return NULL;
}

/*
 * Hands a decoded call to a worker, or a stream to a thread of its own: a
 * stream waits on its client's flow control, and must never hold a worker
 * that unary calls and health checks need.
 */
void
worker_schedule(struct rpc_ctx *c)
{
	struct server *srv = c->srv;
	pthread_attr_t attr;
	pthread_t th;
	int r;

	pthread_mutex_lock(&srv->mu);
	if (c->m->kind != RPC_UNARY && c->early_err == 0) {
		if ((r = stream_slot_take(c)) != 0) {
			pthread_mutex_unlock(&srv->mu);
			if (r == VAULT_ERR_LIMIT)
				call_denied(c, RPC_DENY_STREAM_LIMIT);
			call_finish(c, r);
			return;
		}
		pthread_mutex_unlock(&srv->mu);
		call_ref(c);	/* the thread's */
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, stream_main, c) != 0) {
			pthread_mutex_lock(&srv->mu);
			stream_slot_put(c);
			pthread_mutex_unlock(&srv->mu);
			call_finish(c, rpc_fail(c, VAULT_ERR_LIMIT, "cannot start a stream"));
			call_unref(c);
		}
		pthread_attr_destroy(&attr);
		return;
	}
	if (srv->q_len >= MAX_QUEUED) {
		pthread_mutex_unlock(&srv->mu);
		call_denied(c, RPC_DENY_BUSY);
		call_finish(c, rpc_fail(c, VAULT_ERR_LIMIT, "server busy; retry later"));
		return;
	}
	c->next = NULL;
	if (srv->q_tail != NULL)
		srv->q_tail->next = c;
	else
		srv->q_head = c;
	srv->q_tail = c;
	srv->q_len++;
	if (srv->idle != NULL) {
		struct worker *w = srv->idle;

		unidle(srv, w);
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&srv->mu);
}
