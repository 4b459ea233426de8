/*
 * Call life cycle. A call object is armed with grpc_server_request_call on
 * one completion queue (every method, known or not, arrives this way, so an
 * unknown method is answered UNIMPLEMENTED at once). When it arrives, the
 * call starts RECV_CLOSE_ON_SERVER (to learn of cancellation), is looked up
 * in the dispatch table, authenticated and authorized, and its request
 * message is received. The decoded request is handed to a worker thread;
 * the handler answers with rpc_reply or rpc_send, and the runtime sends the
 * status. Each started batch holds a reference; the call is freed when the
 * last batch completes.
 *
 * This file holds the completion-queue threads and a call's way from its
 * arrival to a worker; call.c how it ends, worker.c the handler's run.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "rpc/alloc.h"
#include "rpc/authz.h"
#include "rpc/call.h"
#include "rpc/cq.h"
#include "rpc/decode.h"
#include "rpc/denial.h"
#include "rpc/internal.h"
#include "rpc/pending.h"
#include "rpc/worker.h"
#include "util/log.h"

#define ARMED_PER_CQ 16

static void arm(struct cq_thread *cq);

static void
on_recv(struct tag *t, bool ok)
{
	struct rpc_ctx *c = t->call;
	grpc_byte_buffer *bb = c->recv;
	int r;

	pending_done(c);
	c->recv = NULL;
	if (ok && bb == NULL && c->m->kind == RPC_BIDI_STREAM) {
		call_finish(c, 0);	/* closed before asking anything */
		call_unref(c);
		return;
	}
	if (!ok || bb == NULL) {
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		call_finish(c, rpc_fail(c, VAULT_ERR_INVALID,
		    "the request message is missing"));
		call_unref(c);
		return;
	}
	r = decode_request(c, bb, &c->req);
	/* A refused request is audited as such (no field of it is recorded). */
	if (r != 0 && c->srv->sink != NULL && c->principal != NULL) {
		c->early_err = r;
		worker_schedule(c);
	} else if (r != 0) {
		call_finish(c, r);
	} else {
		worker_schedule(c);
	}
	call_unref(c);
}

static const struct rpc_method *
lookup(const struct server *srv, grpc_slice path)
{
	for (size_t i = 0; i < srv->n_methods; i++)
		if (grpc_slice_str_cmp(path, srv->methods[i].path) == 0)
			return &srv->methods[i];
	return NULL;
}

/*
 * A call refused before dispatch. Denials are audited, and audit writes may
 * not block this thread, so a worker writes them. Anonymous denials are
 * accounted by denial.h instead of one entry each.
 */
static void
refuse(struct rpc_ctx *c, int err)
{
	struct server *srv = c->srv;

	/* No principal: anyone can send these, so they are counted. */
	if (c->principal == NULL && c->deny_reason != NULL) {
		if ((c->m->flags & RPC_PUBLIC) || srv->sink == NULL) {
			call_finish(c, err);	/* never audited */
			return;
		}
		switch (denials_note(srv->denials, c->peer, c->deny_reason,
		    c->m->path, now_ms())) {
		case DENIAL_AUDIT:
			break;
		case DENIAL_COUNTED:
			call_finish(c, err);
			return;
		case DENIAL_LIMITED:
			call_denied(c, RPC_DENY_AUTH_RATE_LIMIT);
			call_reset(c, rpc_fail(c, VAULT_ERR_LIMIT, "too many failed "
			    "authentications from this address; retry later"));
			return;
		}
	}
	if (srv->sink == NULL) {
		call_finish(c, err);
		return;
	}
	c->early_err = err;
	worker_schedule(c);
}

static void
on_new(struct tag *t, bool ok)
{
	struct rpc_ctx *c = t->call;
	struct server *srv = c->srv;
	grpc_op op;
	int r;

	if (!ok) {			/* the server is shutting down */
		call_free(c);
		return;
	}
	pthread_mutex_lock(&srv->mu);
	srv->live_calls++;
	pthread_mutex_unlock(&srv->mu);
	if (!atomic_load(&srv->stopping))
		arm(c->cq);
	c->deadline = gpr_convert_clock_type(c->details.deadline,
	    GPR_CLOCK_MONOTONIC);
	c->peer = grpc_call_get_peer(c->call);
	c->start_us = now_us();

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->close_cancelled;
	if (call_start_batch(c, &op, 1, &c->t_close) != GRPC_CALL_OK) {
		call_unref(c);
		return;
	}
	if ((c->m = lookup(srv, c->details.method)) == NULL) {
		call_finish(c, rpc_fail(c, VAULT_ERR_UNIMPLEMENTED, "unknown method"));
		return;
	}
	if ((r = authz_check(c)) != 0) {
		refuse(c, r);
		return;
	}
	if (c->m->handler == NULL) {
		call_finish(c, rpc_fail(c, VAULT_ERR_UNIMPLEMENTED,
		    "%s is not implemented in this version", c->m->path));
		return;
	}
	if ((r = pending_add(c)) != 0) {
		if (r == VAULT_ERR_LIMIT)
			call_denied(c, RPC_DENY_PENDING_LIMIT);
		if (c->principal == NULL)
			call_reset(c, r);
		else
			call_finish(c, r);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv;
	if (call_start_batch(c, &op, 1, &c->t_recv) != GRPC_CALL_OK) {
		pending_done(c);
		call_finish(c, VAULT_ERR_INTERNAL);
	}
}

static void
set_tag(struct tag *t, void (*fn)(struct tag *, bool), struct rpc_ctx *c)
{
	t->fn = fn;
	t->call = c;
	t->srv = c->srv;
}

static void
arm(struct cq_thread *cq)
{
	struct rpc_ctx *c = calloc(1, sizeof(*c));
	grpc_call_error e;

	if (c == NULL) {
		log_error("out of memory arming a call");
		return;
	}
	c->srv = cq->srv;
	c->cq = cq;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	c->status_details = grpc_empty_slice();
	set_tag(&c->t_new, on_new, c);
	set_tag(&c->t_close, call_on_close, c);
	set_tag(&c->t_recv, on_recv, c);
	set_tag(&c->t_send, call_on_send, c);
	set_tag(&c->t_final, call_on_final, c);
	e = grpc_server_request_call(cq->srv->gs, &c->call, &c->details, &c->md,
	    cq->cq, cq->cq, &c->t_new);
	if (e != GRPC_CALL_OK) {
		if (!atomic_load(&cq->srv->stopping))
			log_error("grpc_server_request_call: error %d", (int)e);
		call_free(c);
	}
}

void *
cq_main(void *arg)
{
	struct cq_thread *cq = arg;

	pthread_setname_np(pthread_self(), "vaultd-cq");

	for (int i = 0; i < ARMED_PER_CQ; i++)
		arm(cq);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(cq->cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		struct tag *t;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		t = ev.tag;
		t->fn(t, ev.success != 0);
	}
	return NULL;
}
