/*
 * What the pieces of the RPC runtime share, and nothing else sees: the
 * server and the call objects. Handlers know a call only as the opaque
 * struct rpc_ctx of rpc.h; this header is for daemon/rpc/ alone.
 *
 * Locking: srv->mu guards the work queue, the idle workers, the stream and
 * pending-call counts and lists, live_calls and the stop flags; c->mu
 * guards a call's send state (md_sent, send_pending, send_failed, closed)
 * and receive state (next_pending, next_ok);
 * srv->auth_mu guards the srv->auth pointer.
 */
#ifndef VAULT_RPC_INTERNAL_H
#define VAULT_RPC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "conf/auth.h"
#include "rpc/reqcheck.h"
#include "rpc/rpc.h"
#include "rpc/stats.h"
#include "util/timeutil.h"

struct counter;
struct server;
struct denials;

struct tag {
	void (*fn)(struct tag *t, bool ok);
	struct rpc_ctx *call;
	struct server *srv;
};

struct cq_thread {
	grpc_completion_queue *cq;
	pthread_t thread;
	struct server *srv;
};

struct rpc_ctx {			/* one call; handlers know it as rpc_ctx */
	struct server *srv;
	struct cq_thread *cq;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	grpc_byte_buffer *recv;
	grpc_byte_buffer *send_buf;	/* the stream message in flight */
	grpc_byte_buffer *reply;	/* the unary response */
	grpc_slice status_details;
	int close_cancelled;
	atomic_int refs;
	struct tag t_new, t_close, t_recv, t_send, t_final;
	const struct rpc_method *m;
	struct auth *auth;		/* the policy this call was checked against */
	const struct principal *principal;
	ProtobufCMessage *req;
	gpr_timespec deadline;		/* monotonic */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool md_sent, send_pending, send_failed, closed;
	int early_err;			/* refused before dispatch: audit, then answer */
	char *peer;			/* the connection (address:port), gpr-owned */
	const char *deny_reason;	/* why authentication failed (static) */
	/* While the request message is awaited (srv->awaiting, under srv->mu). */
	struct rpc_ctx *await_prev, *await_next;
	int64_t await_since_ms;
	struct counter *await_slot;
	bool awaiting, await_cancelled;
	struct counter *stream_slot;	/* the count this stream holds, if any */
	/* A bidirectional stream's next message (bidi.c); under c->mu. */
	struct tag t_next;
	grpc_byte_buffer *next_recv;
	bool next_pending, next_ok;
	bool audited;
	struct rpc_audit audit;
	uint8_t *owned_refs;
	char errmsg[256];
	int64_t start_us;		/* arrival, monotonic: the latency metric */
	int deny;			/* enum rpc_deny + 1 when refused; 0 */
	struct rpc_ctx *next;		/* work queue */
};

/*
 * A worker thread. Idle workers wait on a stack, so the next call goes to
 * the one that was busy last: its stack, scratch region and caches are
 * still warm, where a FIFO wake-up would pick the coldest.
 */
struct worker {
	pthread_t thread;
	pthread_cond_t cv;		/* popped off the idle stack, or stop */
	struct server *srv;
	struct worker *next_idle;
	bool idle;			/* on the idle stack */
};

struct server {
	grpc_server *gs;
	struct cq_thread *cqs;
	int n_cq;
	int port;			/* bound by server_bind */
	const struct rpc_method *methods;
	size_t n_methods;
	void *app;
	struct auth *auth;		/* current policy; auth_mu guards the pointer */
	pthread_mutex_t auth_mu;
	bool tls;
	const struct rpc_audit_sink *sink;
	char *tls_cert, *tls_key, *tls_ca;
	atomic_bool tls_reload;
	int grace_ms, max_streams, max_streams_per_principal;
	int max_public_streams, max_public_streams_per_peer;
	int public_streams;
	struct counter *principal_streams, *peer_streams;
	struct denials *denials;
	struct rpc_stats *stats;	/* the caller's (server_opts); may be NULL */
	pthread_t sweeper;
	pthread_cond_t sweep_cv;
	bool sweeper_stop;		/* under mu; sweep_cv wakes the sweeper */
	/* Calls whose request message has not arrived yet; n_: anonymous. */
	struct rpc_ctx *awaiting;
	int n_awaiting, max_pending, max_pending_per_peer, request_timeout_ms;
	struct counter *peer_awaiting, *principal_awaiting;
	const struct reqcheck_opts *strings;
	struct worker *workers;
	int n_workers;
	pthread_mutex_t mu;
	struct worker *idle;		/* idle workers, the last one on top */
	pthread_cond_t state_cv;	/* a call ended, or shutdown completed */
	struct rpc_ctx *q_head, *q_tail;
	size_t q_len;
	int live_calls, streams;
	atomic_bool stopping, hard_cancel;
	bool workers_stop, shutdown_done;
	struct tag t_shutdown;
};

/* Intervals (timeouts, denial windows) run on the monotonic clock. */
static inline int64_t
now_ms(void)
{
	return (int64_t)time_monotonic_ms();
}

static inline int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* c's counters: its method's slot in the table, or the "unknown" one. */
static inline size_t
call_slot(const struct rpc_ctx *c)
{
	return c->m != NULL ? (size_t)(c->m - c->srv->methods) :
	    c->srv->n_methods;
}

/* Marks c as refused for reason d (counted when the call ends). */
static inline void
call_denied(struct rpc_ctx *c, enum rpc_deny d)
{
	c->deny = (int)d + 1;
}

#endif
