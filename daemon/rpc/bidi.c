/*
 * Bidirectional streams: the requests after the first (rpc_recv of rpc.h).
 * The first request of the stream comes the usual way (cq.c: the pending
 * pool, its timeout, decode.c) and the stream runs on a thread of its own
 * with a stream slot (worker.c, streams.c), so a client that neither sends
 * nor half-closes holds that slot and that thread, never a worker: the
 * stream caps bound how many it can hold, and idle_ms how long. A stop of
 * the server ends waiting receives at once (UNAVAILABLE), so idle streams
 * never hold the shutdown for its grace period.
 *
 * Each later message is decoded and checked by decode.c exactly like a
 * first one, and is at most max_request_bytes long (the transport's limit
 * for every message). One receive at a time, each waited for before
 * rpc_recv returns, so nothing of it outlives the call.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "rpc/alloc.h"
#include "rpc/call.h"
#include "rpc/decode.h"
#include "rpc/internal.h"
#include "util/timeutil.h"

/* How often a waiting receive looks at the deadline and for a stop. */
#define RECV_POLL_MS 200

enum stop { GO_ON, STOP_SERVER, STOP_DEADLINE, STOP_IDLE };

static void
on_next(struct tag *t, bool ok)
{
	struct rpc_ctx *c = t->call;

	pthread_mutex_lock(&c->mu);
	c->next_pending = false;
	c->next_ok = ok;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	call_unref(c);	/* the batch's */
}

/* Whether a receive still pending must be given up; under c->mu. */
static enum stop
must_stop(const struct rpc_ctx *c, int64_t idle_end)
{
	/* An idle stream must not hold the shutdown for its grace period. */
	if (atomic_load(&c->srv->hard_cancel) || atomic_load(&c->srv->stopping))
		return STOP_SERVER;
	if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), c->deadline) > 0)
		return STOP_DEADLINE;
	if (now_ms() >= idle_end)
		return STOP_IDLE;
	return GO_ON;
}

/*
 * Ends the call for why; the pending receive then completes (not ok) and
 * the client reads this status.
 */
static int
stop_call(struct rpc_ctx *c, enum stop why, int idle_ms)
{
	int err;

	switch (why) {
	case STOP_SERVER:
		err = rpc_fail(c, VAULT_ERR_UNAVAILABLE, "the server is stopping");
		grpc_call_cancel_with_status(c->call, GRPC_STATUS_UNAVAILABLE,
		    c->errmsg, NULL);
		return err;
	case STOP_DEADLINE:
		err = rpc_fail(c, VAULT_ERR_DEADLINE, "deadline exceeded");
		break;
	default:
		err = rpc_fail(c, VAULT_ERR_DEADLINE, "no request on this stream "
		    "for %d ms; open a new one", idle_ms);
		break;
	}
	grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
	    c->errmsg, NULL);
	return err;
}

/* Waits for the receive to complete, ending the call if it must stop. */
static int
wait_next(struct rpc_ctx *c, int idle_ms)
{
	int64_t idle_end = now_ms() + idle_ms;
	enum stop why = GO_ON;
	int err = 0;

	pthread_mutex_lock(&c->mu);
	while (c->next_pending) {
		struct timespec ts = time_after_ms(RECV_POLL_MS);

		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		if (!c->next_pending || why != GO_ON ||
		    (why = must_stop(c, idle_end)) == GO_ON)
			continue;
		pthread_mutex_unlock(&c->mu);
		err = stop_call(c, why, idle_ms);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return err;
}

int
rpc_recv(struct rpc_ctx *c, int idle_ms, ProtobufCMessage **msg)
{
	grpc_byte_buffer *bb;
	grpc_op op;
	bool ok;
	int err;

	*msg = NULL;
	if (c->m->kind != RPC_BIDI_STREAM)
		abort();	/* a programming error in the handler */
	if (rpc_cancelled(c))
		return VAULT_ERR_CANCELLED;
	if (rpc_stopping(c))
		return rpc_fail(c, VAULT_ERR_UNAVAILABLE, "the server is stopping");
	c->t_next = (struct tag){ .fn = on_next, .call = c, .srv = c->srv };
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->next_recv;
	pthread_mutex_lock(&c->mu);
	c->next_pending = true;
	pthread_mutex_unlock(&c->mu);
	if (call_start_batch(c, &op, 1, &c->t_next) != GRPC_CALL_OK) {
		pthread_mutex_lock(&c->mu);
		c->next_pending = false;
		pthread_mutex_unlock(&c->mu);
		return rpc_fail(c, VAULT_ERR_CANCELLED, "the stream cannot be read");
	}
	err = wait_next(c, idle_ms);
	pthread_mutex_lock(&c->mu);
	ok = c->next_ok;
	bb = c->next_recv;
	c->next_recv = NULL;
	pthread_mutex_unlock(&c->mu);
	if (err != 0 || !ok) {
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		return err != 0 ? err : VAULT_ERR_CANCELLED;
	}
	if (bb == NULL)
		return 0;	/* the client half-closed: no more requests */
	return decode_request(c, bb, msg);
}

void
rpc_msg_free(ProtobufCMessage *msg)
{
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &wiping_allocator);
}
