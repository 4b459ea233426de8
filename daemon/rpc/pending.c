/*
 * The pending-call pool: calls whose headers have come and whose request
 * message is awaited, bounded in number and in time.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <grpc/grpc.h>

#include "conf/auth.h"
#include "rpc/counter.h"
#include "rpc/denial.h"
#include "rpc/internal.h"
#include "rpc/pending.h"

/*
 * A call's headers have come and its message is awaited. Each such call
 * holds memory, and a client may send headers and never the message, so
 * they are bounded, each for request_timeout_ms at most (the sweeper
 * cancels it). Anonymous calls (the public health methods) share one
 * pool of max_pending, at most max_pending_per_peer from one address; each principal has max_pending of its own, so no anonymous
 * flood holds back an authenticated call.
 */
int
pending_add(struct rpc_ctx *c)
{
	struct server *srv = c->srv;
	char key[DENIAL_PEER_MAX + AUTH_NAME_MAX];
	bool anon = c->principal == NULL;
	struct counter **list = anon ? &srv->peer_awaiting :
	    &srv->principal_awaiting;
	int cap = anon ? srv->max_pending_per_peer : srv->max_pending;
	struct counter *e;
	int r = 0;

	if (anon)
		denials_peer_address(c->peer, key);
	else
		snprintf(key, sizeof(key), "%s", c->principal->name);
	pthread_mutex_lock(&srv->mu);
	if (anon && srv->n_awaiting >= srv->max_pending) {
		r = rpc_fail(c, VAULT_ERR_LIMIT, "too many calls waiting for "
		    "their request message; retry later");
	} else if ((e = counter_get(list, key)) == NULL) {
		r = VAULT_ERR_NOMEM;
	} else if (e->n >= cap) {
		if (e->n == 0)
			counter_put(list, e);
		r = rpc_fail(c, VAULT_ERR_LIMIT, "too many calls from this %s "
		    "waiting for their request message; retry later",
		    anon ? "address" : "principal");
	} else {
		e->n++;
		c->await_slot = e;
		c->await_since_ms = now_ms();
		c->awaiting = true;
		c->await_prev = NULL;
		c->await_next = srv->awaiting;
		if (srv->awaiting != NULL)
			srv->awaiting->await_prev = c;
		srv->awaiting = c;
		if (anon)
			srv->n_awaiting++;
	}
	pthread_mutex_unlock(&srv->mu);
	return r;
}

/* The message came (or never will): c no longer counts as waiting. */
void
pending_done(struct rpc_ctx *c)
{
	struct server *srv = c->srv;

	pthread_mutex_lock(&srv->mu);
	if (c->awaiting) {
		if (c->await_prev != NULL)
			c->await_prev->await_next = c->await_next;
		else
			srv->awaiting = c->await_next;
		if (c->await_next != NULL)
			c->await_next->await_prev = c->await_prev;
		if (c->principal == NULL) {
			counter_put(&srv->peer_awaiting, c->await_slot);
			srv->n_awaiting--;
		} else {
			counter_put(&srv->principal_awaiting, c->await_slot);
		}
		c->awaiting = false;
	}
	pthread_mutex_unlock(&srv->mu);
}

#define SWEEP_BATCH 256

/*
 * Cancels the calls whose message is overdue: picked (and their gRPC call
 * referenced) under srv->mu, cancelled after it is released.
 */
void
pending_sweep(struct server *srv, int64_t now)
{
	grpc_call *due[SWEEP_BATCH];
	size_t n;

	do {
		n = 0;
		pthread_mutex_lock(&srv->mu);
		for (struct rpc_ctx *c = srv->awaiting; c != NULL && n < SWEEP_BATCH;
		    c = c->await_next)
			if (!c->await_cancelled &&
			    now - c->await_since_ms >= srv->request_timeout_ms) {
				c->await_cancelled = true;
				grpc_call_ref(c->call);
				due[n++] = c->call;
			}
		pthread_mutex_unlock(&srv->mu);
		for (size_t i = 0; i < n; i++) {
			grpc_call_cancel_with_status(due[i],
			    GRPC_STATUS_DEADLINE_EXCEEDED, "the request message did "
			    "not arrive in time", NULL);
			grpc_call_unref(due[i]);
		}
	} while (n == SWEEP_BATCH);
}
