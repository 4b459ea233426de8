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
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <sodium.h>

#include "rpc/denial.h"
#include "util/log.h"
#include "rpc/reqcheck.h"
#include "rpc/server.h"
#include "util/utf8.h"
#include "util/timeutil.h"

#define ARMED_PER_CQ 16
#define DENY_METADATA "invalid metadata"
#define MAX_CALLS_PER_CONNECTION 256
#define MAX_QUEUED 4096
/* How long a stop with no call left waits for idle connections to go. */
#define SHUTDOWN_IDLE_MS 50

struct server;

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
	bool audited;
	struct rpc_audit audit;
	uint8_t *owned_refs;
	char errmsg[256];
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

/* A count per key (a principal, or a peer address); under srv->mu. */
struct counter {
	struct counter *next;
	int n;
	char key[];
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

static void arm(struct cq_thread *cq);
static void finish(struct rpc_ctx *c, int err);

static grpc_status_code
status_from_err(int err)
{
	switch (err) {
	case VAULT_OK: return GRPC_STATUS_OK;
	case VAULT_ERR_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
	case VAULT_ERR_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
	case VAULT_ERR_DENIED: return GRPC_STATUS_PERMISSION_DENIED;
	case VAULT_ERR_UNAUTHENTICATED: return GRPC_STATUS_UNAUTHENTICATED;
	case VAULT_ERR_LIMIT: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case VAULT_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case VAULT_ERR_NOSPACE: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case VAULT_ERR_STATE: return GRPC_STATUS_FAILED_PRECONDITION;
	case VAULT_ERR_KEY: return GRPC_STATUS_FAILED_PRECONDITION;
	case VAULT_ERR_CONSENT: return GRPC_STATUS_FAILED_PRECONDITION;
	case VAULT_ERR_EXISTS: return GRPC_STATUS_ALREADY_EXISTS;
	case VAULT_ERR_CRYPTO: return GRPC_STATUS_DATA_LOSS;
	case VAULT_ERR_CANCELLED: return GRPC_STATUS_CANCELLED;
	case VAULT_ERR_DEADLINE: return GRPC_STATUS_DEADLINE_EXCEEDED;
	case VAULT_ERR_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
	case VAULT_ERR_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
	default: return GRPC_STATUS_INTERNAL;
	}
}

/* What the caller reads when a handler set no message: never a secret. */
static const char *
default_message(int err)
{
	switch (err) {
	case VAULT_ERR_CRYPTO: return "stored data failed its integrity check";
	case VAULT_ERR_STORE: case VAULT_ERR_IO: case VAULT_ERR_CONFIG:
	case VAULT_ERR_INTERNAL: return "internal error; see the server log";
	default: return vault_strerror(err);
	}
}

/* Intervals (timeouts, denial windows) run on the monotonic clock. */
static int64_t
now_ms(void)
{
	return (int64_t)time_monotonic_ms();
}

/* ------------------------------------------------------- wiped memory */

/*
 * Decoded requests and packed replies hold personal data in plain memory:
 * both are wiped before their memory is given back. The allocator keeps
 * each block's size in front of it, since protobuf-c's free does not pass
 * one.
 */
#define WIPE_HDR 16

static void *
wipe_alloc(void *data, size_t n)
{
	uint8_t *p;

	(void)data;
	if (n > SIZE_MAX - WIPE_HDR || (p = malloc(n + WIPE_HDR)) == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + WIPE_HDR;
}

static void
wipe_free(void *data, void *ptr)
{
	uint8_t *p;
	size_t n;

	(void)data;
	if (ptr == NULL)
		return;
	p = (uint8_t *)ptr - WIPE_HDR;
	memcpy(&n, p, sizeof(n));
	sodium_memzero(p, n + WIPE_HDR);
	free(p);
}

static ProtobufCAllocator wiping_allocator = { wipe_alloc, wipe_free, NULL };

/* Wipes and frees a byte buffer this runtime packed (raw, uncompressed). */
static void
wipe_byte_buffer(grpc_byte_buffer *bb)
{
	if (bb == NULL)
		return;
	if (bb->type == GRPC_BB_RAW &&
	    bb->data.raw.compression == GRPC_COMPRESS_NONE) {
		grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;

		for (size_t i = 0; i < sb->count; i++)
			sodium_memzero(GRPC_SLICE_START_PTR(sb->slices[i]),
			    GRPC_SLICE_LENGTH(sb->slices[i]));
	}
	grpc_byte_buffer_destroy(bb);
}

/* ------------------------------------------------------------ references */

static void
call_ref(struct rpc_ctx *c)
{
	atomic_fetch_add(&c->refs, 1);
}

static void
call_free(struct rpc_ctx *c)
{
	if (c->call != NULL)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	if (c->recv != NULL)
		grpc_byte_buffer_destroy(c->recv);
	wipe_byte_buffer(c->reply);
	wipe_byte_buffer(c->send_buf);
	grpc_slice_unref(c->status_details);
	if (c->req != NULL)
		protobuf_c_message_free_unpacked(c->req, &wiping_allocator);
	auth_unref(c->auth);
	if (c->peer != NULL)
		gpr_free(c->peer);
	free(c->owned_refs);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void
call_unref(struct rpc_ctx *c)
{
	struct server *srv = c->srv;

	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	call_free(c);
	pthread_mutex_lock(&srv->mu);
	srv->live_calls--;
	pthread_cond_broadcast(&srv->state_cv);
	pthread_mutex_unlock(&srv->mu);
}

static grpc_call_error
start_batch(struct rpc_ctx *c, const grpc_op *ops, size_t n, struct tag *t)
{
	grpc_call_error e;

	call_ref(c);
	if ((e = grpc_call_start_batch(c->call, ops, n, t, NULL)) != GRPC_CALL_OK) {
		log_error("grpc_call_start_batch: error %d", (int)e);
		atomic_fetch_sub(&c->refs, 1);
	}
	return e;
}

/* --------------------------------------------------------- handler API */

int
rpc_fail(struct rpc_ctx *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

void
rpc_audit_ref(struct rpc_ctx *c, const uint8_t ref[32])
{
	memcpy(c->audit.ref, ref, 32);
	c->audit.refs = c->audit.ref;
	c->audit.n_refs = 1;
}

void
rpc_audit_refs(struct rpc_ctx *c, uint8_t *refs, size_t n)
{
	free(c->owned_refs);
	c->owned_refs = refs;
	c->audit.refs = refs;
	c->audit.n_refs = n;
}

/* Text cut to fit an audit field is cut between characters, not inside one. */
static void
audit_text(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		n = utf8_prefix(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void
rpc_audit_detail(struct rpc_ctx *c, const char *fmt, ...)
{
	char buf[sizeof(c->audit.detail) * 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	audit_text(c->audit.detail, sizeof(c->audit.detail), buf);
}

void
rpc_audit_purpose(struct rpc_ctx *c, const char *purpose)
{
	audit_text(c->audit.purpose, sizeof(c->audit.purpose), purpose);
}

void
rpc_audit_dataset(struct rpc_ctx *c, const char *dataset)
{
	audit_text(c->audit.dataset, sizeof(c->audit.dataset), dataset);
}

void
rpc_audit_names(struct rpc_ctx *c, const char *names)
{
	audit_text(c->audit.names, sizeof(c->audit.names), names);
}

void
rpc_audit_source(struct rpc_ctx *c, const char *source)
{
	audit_text(c->audit.source, sizeof(c->audit.source), source);
}

static const char *
outcome_of(int err)
{
	switch (err) {
	case 0: return "ok";
	case VAULT_ERR_INVALID: return "invalid";
	case VAULT_ERR_NOT_FOUND: return "not_found";
	case VAULT_ERR_DENIED: return "denied";
	case VAULT_ERR_UNAUTHENTICATED: return "unauthenticated";
	case VAULT_ERR_CONSENT: return "no_consent";
	case VAULT_ERR_EXISTS: return "conflict";
	case VAULT_ERR_STATE: case VAULT_ERR_KEY: return "refused";
	case VAULT_ERR_CANCELLED: case VAULT_ERR_DEADLINE: return "cancelled";
	default: return "error";
	}
}

/* Who called what, and how it went: the runtime's part of the entry. */
static void
audit_fill(struct rpc_ctx *c, const char *outcome)
{
	c->audit.principal = c->principal ? c->principal->name : "-";
	c->audit.method = c->m->path;
	c->audit.outcome = outcome;
}

/* Whether a call of this method that gets through leaves an audit entry. */
static bool
audits_success(const struct rpc_ctx *c)
{
	return c->srv->sink != NULL &&
	    !(c->m->flags & (RPC_PUBLIC | RPC_AUDIT_DENIALS_ONLY));
}

/* Writes the call's audit entry once; fail closed. */
static int
audit_now(struct rpc_ctx *c, int err)
{
	if (c->audited || c->srv->sink == NULL || c->m == NULL ||
	    (c->m->flags & RPC_PUBLIC) ||
	    (c->early_err == 0 && !audits_success(c)))
		return 0;
	c->audited = true;
	audit_fill(c, outcome_of(err));
	if (c->srv->sink->append(c->srv->app, &c->audit) != 0) {
		log_error("%s: the audit entry cannot be written; refusing the call",
		    c->m->path);
		return rpc_fail(c, VAULT_ERR_UNAVAILABLE, "the audit log cannot be "
		    "written; the call was refused");
	}
	return 0;
}

const struct principal *
rpc_principal(const struct rpc_ctx *c)
{
	return c->principal;
}

void *
rpc_app(const struct rpc_ctx *c)
{
	return c->srv->app;
}

bool
rpc_stopping(const struct rpc_ctx *c)
{
	return atomic_load(&c->srv->stopping);
}

bool
rpc_cancelled(struct rpc_ctx *c)
{
	bool gone;

	if (atomic_load(&c->srv->hard_cancel))
		return true;
	if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), c->deadline) > 0)
		return true;
	pthread_mutex_lock(&c->mu);
	gone = c->closed || c->send_failed;
	pthread_mutex_unlock(&c->mu);
	return gone;
}

void
rpc_wait(struct rpc_ctx *c, int timeout_ms)
{
	struct timespec ts = time_after_ms(timeout_ms);

	pthread_mutex_lock(&c->mu);
	if (!c->closed && !c->send_failed)
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	pthread_mutex_unlock(&c->mu);
}

static grpc_byte_buffer *
pack(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(n);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

int
rpc_reply(struct rpc_ctx *c, const ProtobufCMessage *msg)
{
	if (c->m->kind != RPC_UNARY || c->reply != NULL)
		abort();	/* a programming error in the handler */
	c->reply = pack(msg);
	return 0;
}

int
rpc_send(struct rpc_ctx *c, const ProtobufCMessage *msg)
{
	grpc_op ops[2];
	size_t n = 0;

	if (c->m->kind != RPC_SERVER_STREAM)
		abort();
	if (rpc_cancelled(c))
		return VAULT_ERR_CANCELLED;
	if (audit_now(c, 0) != 0)
		return VAULT_ERR_UNAVAILABLE;
	pthread_mutex_lock(&c->mu);
	while (c->send_pending && !c->closed)
		pthread_cond_wait(&c->cv, &c->mu);
	if (c->closed || c->send_failed) {
		pthread_mutex_unlock(&c->mu);
		return VAULT_ERR_CANCELLED;
	}
	wipe_byte_buffer(c->send_buf);
	c->send_buf = pack(msg);
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = c->send_buf;
	c->send_pending = true;
	if (start_batch(c, ops, n, &c->t_send) != GRPC_CALL_OK) {
		c->send_pending = false;
		c->send_failed = true;
	}
	pthread_mutex_unlock(&c->mu);
	return c->send_failed ? VAULT_ERR_CANCELLED : 0;
}

/* ------------------------------------------------------ call completion */

static void
on_final(struct tag *t, bool ok)
{
	(void)ok;
	call_unref(t->call);	/* the batch's reference */
	call_unref(t->call);	/* the call's own reference, held since arrival */
}

/* Sends initial metadata if not yet sent, the reply if any, and the status. */
static void
finish(struct rpc_ctx *c, int err)
{
	grpc_status_code code = status_from_err(err);
	grpc_op ops[3];
	size_t n = 0;

	pthread_mutex_lock(&c->mu);
	while (c->send_pending && !c->closed)
		pthread_cond_wait(&c->cv, &c->mu);
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	if (err == 0 && c->reply != NULL) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->reply;
	}
	if (err != 0 && c->errmsg[0] == '\0')
		snprintf(c->errmsg, sizeof(c->errmsg), "%s", default_message(err));
	c->status_details = grpc_slice_from_copied_string(c->errmsg);
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details =
	    err != 0 ? &c->status_details : NULL;
	pthread_mutex_unlock(&c->mu);
	if (err != 0 && c->m != NULL && code != GRPC_STATUS_NOT_FOUND &&
	    code != GRPC_STATUS_CANCELLED)
		log_debug("%s: %s", c->m->path, c->errmsg);
	if (start_batch(c, ops, n, &c->t_final) != GRPC_CALL_OK)
		call_unref(c);	/* no completion will come to drop the call's own */
}

static void
on_send(struct tag *t, bool ok)
{
	struct rpc_ctx *c = t->call;

	pthread_mutex_lock(&c->mu);
	c->send_pending = false;
	if (!ok)
		c->send_failed = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	call_unref(c);
}

static void
on_close(struct tag *t, bool ok)
{
	struct rpc_ctx *c = t->call;

	(void)ok;
	pthread_mutex_lock(&c->mu);
	c->closed = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	call_unref(c);
}

/*
 * Ends an anonymous call refused for a limit with RST_STREAM instead of a
 * status: a flooding client that never closes its side would otherwise
 * keep every refused stream half open in the transport.
 */
static void
reset(struct rpc_ctx *c, int err)
{
	if (c->errmsg[0] == '\0')
		snprintf(c->errmsg, sizeof(c->errmsg), "%s", default_message(err));
	grpc_call_cancel_with_status(c->call, status_from_err(err), c->errmsg,
	    NULL);
	call_unref(c);	/* no final batch will come to drop the call's own */
}

/* ------------------------------------------------------------ workers */

static void
run_handler(struct rpc_ctx *c)
{
	const struct rpc_audit_sink *sink = c->srv->sink;
	bool armed;
	int r;

	if (c->early_err != 0) {
		r = audit_now(c, c->early_err);
		finish(c, r != 0 ? r : c->early_err);
		return;
	}
	if (rpc_cancelled(c)) {
		finish(c, VAULT_ERR_CANCELLED);
		return;
	}
	/* The entry rides along with the handler's first write, if any. */
	if ((armed = audits_success(c))) {
		audit_fill(c, "ok");
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
	if (audit_now(c, r) != 0)
		r = VAULT_ERR_UNAVAILABLE;
	finish(c, r);
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

static void *
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

/* The counter of key in *list, created at 0 if absent; NULL if out of memory. */
static struct counter *
counter_get(struct counter **list, const char *key)
{
	struct counter *e;
	size_t n = strlen(key);

	for (e = *list; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	if ((e = calloc(1, sizeof(*e) + n + 1)) == NULL)
		return NULL;
	memcpy(e->key, key, n + 1);
	e->next = *list;
	*list = e;
	return e;
}

/* Drops one from e (none if it holds none), and e itself at zero. */
static void
counter_put(struct counter **list, struct counter *e)
{
	struct counter **p = list;

	if (e->n > 0 && --e->n > 0)
		return;
	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	free(e);
}

static bool
is_public(const struct rpc_ctx *c)
{
	return (c->m->flags & RPC_PUBLIC) != 0;
}

/* Gives back the stream slot c holds; under srv->mu. */
static void
stream_slot_put(struct rpc_ctx *c)
{
	struct server *srv = c->srv;

	if (is_public(c)) {
		srv->public_streams--;
		counter_put(&srv->peer_streams, c->stream_slot);
	} else {
		srv->streams--;
		counter_put(&srv->principal_streams, c->stream_slot);
	}
	c->stream_slot = NULL;
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
 * Takes a stream slot for c, under srv->mu: authenticated streams share
 * max_streams and each principal has at most max_streams_per_principal;
 * unauthenticated ones (health Watch) have a pool of their own, at most
 * max_public_streams_per_peer an address, so they never crowd out the
 * others and one host cannot take the whole pool. Returns 0, or the refusal set on c.
 */
static int
take_stream_slot(struct rpc_ctx *c)
{
	struct server *srv = c->srv;
	char addr[DENIAL_PEER_MAX];
	struct counter *e;
	int held;

	if (is_public(c)) {
		if (srv->public_streams >= srv->max_public_streams)
			return rpc_fail(c, VAULT_ERR_LIMIT, "too many unauthenticated "
			    "streams (max_public_streams); retry later");
		denials_peer_address(c->peer, addr);
		if ((e = counter_get(&srv->peer_streams, addr)) == NULL)
			return VAULT_ERR_NOMEM;
		if ((held = e->n) >= srv->max_public_streams_per_peer) {
			if (held == 0)		/* just made: forget it */
				counter_put(&srv->peer_streams, e);
			return rpc_fail(c, VAULT_ERR_LIMIT, "this address has %d "
			    "unauthenticated streams open, the most allowed "
			    "(max_public_streams_per_peer)", held);
		}
		srv->public_streams++;
	} else {
		if (srv->streams >= srv->max_streams)
			return rpc_fail(c, VAULT_ERR_LIMIT, "too many streams open "
			    "(max_streams); retry later");
		if ((e = counter_get(&srv->principal_streams, c->principal->name)) == NULL)
			return VAULT_ERR_NOMEM;
		if ((held = e->n) >= srv->max_streams_per_principal) {
			if (held == 0)		/* just made: forget it */
				counter_put(&srv->principal_streams, e);
			return rpc_fail(c, VAULT_ERR_LIMIT, "principal '%s' has %d "
			    "streams open, the most allowed "
			    "(max_streams_per_principal); retry later",
			    c->principal->name, held);
		}
		srv->streams++;
	}
	e->n++;
	c->stream_slot = e;
	return 0;
}

/*
 * Hands a decoded call to a worker, or a stream to a thread of its own: a
 * stream waits on its client's flow control, and must never hold a worker
 * that unary calls and health checks need.
 */
static void
schedule(struct rpc_ctx *c)
{
	struct server *srv = c->srv;
	pthread_attr_t attr;
	pthread_t th;
	int r;

	pthread_mutex_lock(&srv->mu);
	if (c->m->kind == RPC_SERVER_STREAM && c->early_err == 0) {
		if ((r = take_stream_slot(c)) != 0) {
			pthread_mutex_unlock(&srv->mu);
			finish(c, r);
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
			finish(c, rpc_fail(c, VAULT_ERR_LIMIT, "cannot start a stream"));
			call_unref(c);
		}
		pthread_attr_destroy(&attr);
		return;
	}
	if (srv->q_len >= MAX_QUEUED) {
		pthread_mutex_unlock(&srv->mu);
		finish(c, rpc_fail(c, VAULT_ERR_LIMIT, "server busy; retry later"));
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

/* --------------------------------------------------------- arrival */

/*
 * A call's headers have come and its message is awaited. Each such call
 * holds memory, and a client may send headers and never the message, so
 * they are bounded, each for request_timeout_ms at most (the sweeper
 * cancels it). Anonymous calls (the public health methods) share one
 * pool of max_pending, at most max_pending_per_peer from one address; each principal has max_pending of its own, so no anonymous
 * flood holds back an authenticated call.
 */
static int
await_request(struct rpc_ctx *c)
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
static void
await_done(struct rpc_ctx *c)
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
static void
sweep_awaiting(struct server *srv, int64_t now)
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

static void
on_recv(struct tag *t, bool ok)
{
	struct rpc_ctx *c = t->call;
	grpc_byte_buffer_reader reader;
	grpc_slice s;
	int r;

	await_done(c);
	if (!ok || c->recv == NULL) {
		finish(c, rpc_fail(c, VAULT_ERR_INVALID,
		    "the request message is missing"));
		call_unref(c);
		return;
	}
	if (!grpc_byte_buffer_reader_init(&reader, c->recv)) {
		finish(c, rpc_fail(c, VAULT_ERR_INVALID,
		    "the request message cannot be read"));
		call_unref(c);
		return;
	}
	s = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	/* Its slices may share memory with the transport's: freed, not wiped. */
	grpc_byte_buffer_destroy(c->recv);
	c->recv = NULL;
	c->req = protobuf_c_message_unpack(c->m->request, &wiping_allocator,
	    GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	if (c->req == NULL) {
		r = rpc_fail(c, VAULT_ERR_INVALID,
		    "the request is not a valid %s message", c->m->request->name);
	} else {
		/* Every string of every request, before any handler sees it. */
		r = reqcheck_message(c->m->request, GRPC_SLICE_START_PTR(s),
		    GRPC_SLICE_LENGTH(s), c->srv->strings, c->errmsg,
		    sizeof(c->errmsg));
	}
	sodium_memzero(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
	grpc_slice_unref(s);
	/* A refused request is audited as such (no field of it is recorded). */
	if (r != 0 && c->srv->sink != NULL && c->principal != NULL) {
		c->early_err = r;
		schedule(c);
	} else if (r != 0) {
		finish(c, r);
	} else {
		schedule(c);
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

static struct auth *
current_auth(struct server *srv)
{
	struct auth *a;

	pthread_mutex_lock(&srv->auth_mu);
	a = auth_ref(srv->auth);
	pthread_mutex_unlock(&srv->auth_mu);
	return a;
}

/*
 * The principal of the client certificate: the first subject alternative
 * name the policy knows; the common name only when the certificate has no
 * SAN. *presented tells whether the client showed a verified certificate.
 */
static const struct principal *
cert_principal(struct rpc_ctx *c, bool *presented)
{
	static const char *const props[] = { GRPC_X509_SAN_PROPERTY_NAME,
	    GRPC_X509_CN_PROPERTY_NAME };
	grpc_auth_context *actx;
	const struct principal *p = NULL;

	*presented = false;
	if (!c->srv->tls || (actx = grpc_call_auth_context(c->call)) == NULL)
		return NULL;
	if (grpc_auth_context_peer_is_authenticated(actx)) {
		bool had_san = false;

		*presented = true;
		for (size_t i = 0; i < 2 && p == NULL && !(i == 1 && had_san); i++) {
			grpc_auth_property_iterator it =
			    grpc_auth_context_find_properties_by_name(actx, props[i]);
			const grpc_auth_property *prop;

			while (p == NULL && (prop = grpc_auth_property_iterator_next(&it)) != NULL) {
				had_san = had_san || i == 0;
				p = auth_identity(c->auth, prop->value, prop->value_length);
			}
		}
	}
	grpc_auth_context_release(actx);
	return p;
}

/*
 * Metadata values are request input too: text values must be UTF-8 without
 * NUL and of sane length ("-bin" values are binary by definition).
 */
#define MAX_METADATA_VALUE 8192

static int
check_metadata(struct rpc_ctx *c)
{
	for (size_t i = 0; i < c->md.count; i++) {
		grpc_slice k = c->md.metadata[i].key, v = c->md.metadata[i].value;
		size_t kl = GRPC_SLICE_LENGTH(k);
		bool binary = kl > 4 && memcmp(GRPC_SLICE_START_PTR(k) + kl - 4,
		    "-bin", 4) == 0;

		if (binary)
			continue;
		if (GRPC_SLICE_LENGTH(v) > MAX_METADATA_VALUE ||
		    !utf8_valid(GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v)))
			return rpc_fail(c, VAULT_ERR_INVALID, "a metadata value is %s",
			    GRPC_SLICE_LENGTH(v) > MAX_METADATA_VALUE ?
			    "longer than 8192 bytes" : "not valid UTF-8, or holds a NUL");
	}
	return 0;
}

/* Resolves the principal and checks the policy: deny by default. */
static int
authorize(struct rpc_ctx *c)
{
	const grpc_metadata *auth_md = NULL;
	bool presented;

	c->auth = current_auth(c->srv);
	if (check_metadata(c) != 0) {
		c->deny_reason = DENY_METADATA;
		return VAULT_ERR_INVALID;
	}
	if (c->m->flags & RPC_PUBLIC)
		return 0;
	c->principal = cert_principal(c, &presented);
	for (size_t i = 0; c->principal == NULL && i < c->md.count; i++)
		if (grpc_slice_str_cmp(c->md.metadata[i].key, "authorization") == 0)
			auth_md = &c->md.metadata[i];
	if (c->principal == NULL && auth_md != NULL)
		c->principal = auth_bearer(c->auth,
		    (const char *)GRPC_SLICE_START_PTR(auth_md->value),
		    GRPC_SLICE_LENGTH(auth_md->value));
	if (c->principal == NULL && auth_md != NULL) {
		c->deny_reason = "invalid credentials";
		return rpc_fail(c, VAULT_ERR_UNAUTHENTICATED, "invalid credentials");
	}
	if (c->principal == NULL && presented) {
		c->deny_reason = "certificate identity not in the policy";
		return rpc_fail(c, VAULT_ERR_UNAUTHENTICATED,
		    "the client certificate's identity is not in the policy");
	}
	if (c->principal == NULL) {
		c->deny_reason = "missing credentials";
		return rpc_fail(c, VAULT_ERR_UNAUTHENTICATED, "missing credentials: "
		    "present a client certificate or send 'authorization: Bearer "
		    "<token>'");
	}
	if (!auth_allows(c->auth, c->principal, c->m->path))
		return rpc_fail(c, VAULT_ERR_DENIED,
		    "principal '%s' has no role allowed to call %s",
		    c->principal->name, c->m->path);
	return 0;
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
			finish(c, err);	/* never audited */
			return;
		}
		switch (denials_note(srv->denials, c->peer, c->deny_reason,
		    c->m->path, now_ms())) {
		case DENIAL_AUDIT:
			break;
		case DENIAL_COUNTED:
			finish(c, err);
			return;
		case DENIAL_LIMITED:
			reset(c, rpc_fail(c, VAULT_ERR_LIMIT, "too many failed "
			    "authentications from this address; retry later"));
			return;
		}
	}
	if (srv->sink == NULL) {
		finish(c, err);
		return;
	}
	c->early_err = err;
	schedule(c);
}

/* One audit entry for the anonymous denials counted over interval_ms. */
static void
write_denial_summary(void *arg, const char *peer, const char *reason,
    const char *method, uint64_t count, int64_t interval_ms)
{
	struct server *srv = arg;
	struct rpc_audit rec = { .principal = "-", .method = method,
	    .outcome = strcmp(reason, DENY_METADATA) == 0 ? "invalid" :
	    "unauthenticated" };

	snprintf(rec.detail, sizeof(rec.detail), "%llu more denials from %s "
	    "in the last %lld s: %s", (unsigned long long)count, peer,
	    (long long)(interval_ms / 1000), reason);
	if (srv->sink->append(srv->app, &rec) != 0)
		log_error("the audit summary of %llu denials cannot be written",
		    (unsigned long long)count);
}

/* Once a second: denial summaries that are due, overdue request messages. */
static void *
sweeper_main(void *arg)
{
	struct server *srv = arg;

	pthread_setname_np(pthread_self(), "vaultd-sweeper");
	pthread_mutex_lock(&srv->mu);
	while (!srv->sweeper_stop) {
		struct timespec ts = time_after_ms(1000);

		pthread_cond_timedwait(&srv->sweep_cv, &srv->mu, &ts);
		pthread_mutex_unlock(&srv->mu);
		sweep_awaiting(srv, now_ms());
		if (srv->sink != NULL)
			denials_flush(srv->denials, now_ms(), false,
			    write_denial_summary, srv);
		pthread_mutex_lock(&srv->mu);
	}
	pthread_mutex_unlock(&srv->mu);
	if (srv->sink != NULL)
		denials_flush(srv->denials, now_ms(), true, write_denial_summary,
		    srv);
	return NULL;
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

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->close_cancelled;
	if (start_batch(c, &op, 1, &c->t_close) != GRPC_CALL_OK) {
		call_unref(c);
		return;
	}
	if ((c->m = lookup(srv, c->details.method)) == NULL) {
		finish(c, rpc_fail(c, VAULT_ERR_UNIMPLEMENTED, "unknown method"));
		return;
	}
	if ((r = authorize(c)) != 0) {
		refuse(c, r);
		return;
	}
	if (c->m->handler == NULL) {
		finish(c, rpc_fail(c, VAULT_ERR_UNIMPLEMENTED,
		    "%s is not implemented in this version", c->m->path));
		return;
	}
	if ((r = await_request(c)) != 0) {
		if (c->principal == NULL)
			reset(c, r);
		else
			finish(c, r);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv;
	if (start_batch(c, &op, 1, &c->t_recv) != GRPC_CALL_OK) {
		await_done(c);
		finish(c, VAULT_ERR_INTERNAL);
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
	set_tag(&c->t_close, on_close, c);
	set_tag(&c->t_recv, on_recv, c);
	set_tag(&c->t_send, on_send, c);
	set_tag(&c->t_final, on_final, c);
	e = grpc_server_request_call(cq->srv->gs, &c->call, &c->details, &c->md,
	    cq->cq, cq->cq, &c->t_new);
	if (e != GRPC_CALL_OK) {
		if (!atomic_load(&cq->srv->stopping))
			log_error("grpc_server_request_call: error %d", (int)e);
		call_free(c);
	}
}

static void
on_shutdown(struct tag *t, bool ok)
{
	struct server *srv = t->srv;

	(void)ok;
	pthread_mutex_lock(&srv->mu);
	srv->shutdown_done = true;
	pthread_cond_broadcast(&srv->state_cv);
	pthread_mutex_unlock(&srv->mu);
}

static void *
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

/* ------------------------------------------------------ start and stop */

void
server_global_init(void)
{
	grpc_init();
}

void
server_global_shutdown(void)
{
	grpc_shutdown();
}

static void
wait_until(struct server *srv, bool (*cond)(struct server *), int timeout_ms)
{
	struct timespec ts = time_after_ms(timeout_ms < 0 ? 0 : timeout_ms);

	pthread_mutex_lock(&srv->mu);
	while (!cond(srv))
		if (timeout_ms < 0)
			pthread_cond_wait(&srv->state_cv, &srv->mu);
		else if (pthread_cond_timedwait(&srv->state_cv, &srv->mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&srv->mu);
}

/* No call left to finish; connections may still be open. */
static bool
no_calls(struct server *srv)
{
	return srv->live_calls == 0 && srv->streams == 0 &&
	    srv->public_streams == 0;
}

static bool
drained(struct server *srv)
{
	return srv->shutdown_done && no_calls(srv);
}

/* Reads a whole PEM file; NULL (logged) when it cannot. */
static char *
read_pem(const char *path, bool secret)
{
	FILE *f = fopen(path, "r");
	struct stat sb;
	char *buf;
	size_t n;

	if (f == NULL || fstat(fileno(f), &sb) != 0 || sb.st_size > (1 << 20)) {
		log_error("cannot read %s", path);
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	if (secret && (sb.st_mode & 077) != 0) {
		log_error("%s has mode %03o; a private key must be 0600 or stricter",
		    path, (unsigned)(sb.st_mode & 0777));
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)sb.st_size + 1);
	n = buf != NULL ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
	fclose(f);
	if (buf != NULL)
		buf[n] = '\0';
	return buf;
}

/*
 * gRPC asks this on every handshake; after server_reload it hands over the
 * certificate files read anew. A file that fails keeps the old ones.
 */
static grpc_ssl_certificate_config_reload_status
fetch_certs(void *arg, grpc_ssl_server_certificate_config **config)
{
	struct server *srv = arg;
	grpc_ssl_pem_key_cert_pair pair;
	char *cert, *key, *ca;

	if (!atomic_exchange(&srv->tls_reload, false))
		return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	cert = read_pem(srv->tls_cert, false);
	key = read_pem(srv->tls_key, true);
	ca = read_pem(srv->tls_ca, false);
	if (cert == NULL || key == NULL || ca == NULL) {
		free(cert);
		if (key != NULL)
			sodium_memzero(key, strlen(key));
		free(key);
		free(ca);
		log_error("TLS certificates not (re)loaded; the previous ones stay");
		return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
	}
	pair.private_key = key;
	pair.cert_chain = cert;
	*config = grpc_ssl_server_certificate_config_create(ca, &pair, 1);
	sodium_memzero(key, strlen(key));
	free(key);
	free(cert);
	free(ca);
	log_info("TLS certificates loaded");
	return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

static grpc_server_credentials *
make_credentials(struct server *srv, const struct server_opts *opts)
{
	grpc_ssl_server_credentials_options *o;

	if (opts->tls_cert == NULL)
		return grpc_insecure_server_credentials_create();
	srv->tls = true;
	srv->tls_cert = strdup(opts->tls_cert);
	srv->tls_key = strdup(opts->tls_key);
	srv->tls_ca = strdup(opts->tls_client_ca);
	atomic_store(&srv->tls_reload, true);
	o = grpc_ssl_server_credentials_create_options_using_config_fetcher(
	    opts->tls_require_client_cert ?
	    GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY :
	    GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY, fetch_certs, srv);
	return grpc_ssl_server_credentials_create_with_options(o);
}

void
server_reload(struct server *srv, struct auth *auth)
{
	struct auth *old = NULL;

	pthread_mutex_lock(&srv->auth_mu);
	if (auth != NULL) {
		old = srv->auth;
		srv->auth = auth_ref(auth);
	}
	pthread_mutex_unlock(&srv->auth_mu);
	auth_unref(old);
	if (srv->tls)
		atomic_store(&srv->tls_reload, true);
}

/* Frees a server that was bound but never started. */
void
server_discard(struct server *srv)
{
	if (srv == NULL)
		return;
	/* gRPC wants a server that has listeners shut down before it goes. */
	grpc_server_shutdown_and_notify(srv->gs, srv->cqs[0].cq, &srv->t_shutdown);
	while (grpc_completion_queue_next(srv->cqs[0].cq,
	    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).tag != &srv->t_shutdown)
		;
	grpc_server_destroy(srv->gs);
	for (int i = 0; i < srv->n_cq; i++) {
		grpc_completion_queue_shutdown(srv->cqs[i].cq);
		while (grpc_completion_queue_next(srv->cqs[i].cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
		    GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(srv->cqs[i].cq);
	}
	free(srv->cqs);
	free(srv->workers);
	free(srv->tls_cert);
	free(srv->tls_key);
	free(srv->tls_ca);
	auth_unref(srv->auth);
	denials_free(srv->denials);
	free(srv);
}

int
server_bind(struct server **out, const struct server_opts *opts,
    const struct rpc_method *methods, size_t n_methods, struct auth *auth)
{
	grpc_arg args[4];
	grpc_channel_args ch_args = { 4, args };
	grpc_resource_quota *quota;
	grpc_server_credentials *creds;
	struct server *srv;
	int port;

	*out = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return VAULT_ERR_NOMEM;
	/* The limits come from the settings table, defaults and bounds included. */
	if (denials_new(&srv->denials, opts->denial_audit_interval_s,
	    opts->auth_failures_per_peer) != 0) {
		free(srv);
		return VAULT_ERR_NOMEM;
	}
	srv->methods = methods;
	srv->n_methods = n_methods;
	srv->auth = auth_ref(auth);
	pthread_mutex_init(&srv->auth_mu, NULL);
	srv->grace_ms = opts->shutdown_grace_ms;
	srv->sink = opts->audit;
	srv->max_streams = opts->max_streams;
	srv->max_streams_per_principal = opts->max_streams_per_principal;
	srv->max_public_streams = opts->max_public_streams;
	srv->max_public_streams_per_peer = opts->max_public_streams_per_peer;
	srv->strings = opts->strings;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->state_cv, NULL);
	pthread_cond_init(&srv->sweep_cv, NULL);
	srv->max_pending = opts->max_pending_requests;
	srv->max_pending_per_peer = opts->max_pending_requests_per_peer;
	srv->request_timeout_ms = opts->request_timeout_ms;
	srv->t_shutdown = (struct tag){ .fn = on_shutdown, .srv = srv };

	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = opts->max_request_bytes;
	/* Two daemons on one port must fail, not share the traffic. */
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
	args[1].value.integer = 0;
	/*
	 * Every connection's buffers come out of one quota: under pressure the
	 * transport shrinks its flow-control windows instead of reading on, so
	 * oversized or slow requests cannot grow the process without bound.
	 */
	quota = grpc_resource_quota_create("vaultd");
	grpc_resource_quota_resize(quota, (size_t)opts->transport_memory_mb << 20);
	args[2].type = GRPC_ARG_POINTER;
	args[2].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
	args[2].value.pointer.p = quota;
	args[2].value.pointer.vtable = grpc_resource_quota_arg_vtable();
	/* Calls one connection may have open at once (HTTP/2 SETTINGS). */
	args[3].type = GRPC_ARG_INTEGER;
	args[3].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
	args[3].value.integer = MAX_CALLS_PER_CONNECTION;
	srv->gs = grpc_server_create(&ch_args, NULL);
	grpc_resource_quota_unref(quota);
	srv->n_cq = opts->cq_threads;
	srv->cqs = calloc((size_t)srv->n_cq, sizeof(*srv->cqs));
	srv->n_workers = opts->workers;
	srv->workers = calloc((size_t)srv->n_workers, sizeof(*srv->workers));
	if (srv->cqs == NULL || srv->workers == NULL) {
		grpc_server_destroy(srv->gs);
		free(srv->cqs);
		free(srv->workers);
		auth_unref(srv->auth);
		denials_free(srv->denials);
		free(srv);
		return VAULT_ERR_NOMEM;
	}
	for (int i = 0; i < srv->n_cq; i++) {
		srv->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
		srv->cqs[i].srv = srv;
		grpc_server_register_completion_queue(srv->gs, srv->cqs[i].cq, NULL);
	}
	creds = make_credentials(srv, opts);
	port = grpc_server_add_http2_port(srv->gs, opts->listen, creds);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		log_error("cannot listen on %s (in use, not a local address, or "
		    "unusable TLS files)", opts->listen);
		server_discard(srv);
		return VAULT_ERR_IO;
	}
	srv->port = port;
	*out = srv;
	return 0;
}

void
server_run(struct server *srv, void *app)
{
	srv->app = app;
	grpc_server_start(srv->gs);
	for (int i = 0; i < srv->n_workers; i++) {
		srv->workers[i].srv = srv;
		pthread_cond_init(&srv->workers[i].cv, NULL);
		pthread_create(&srv->workers[i].thread, NULL, worker_main,
		    &srv->workers[i]);
	}
	for (int i = 0; i < srv->n_cq; i++)
		pthread_create(&srv->cqs[i].thread, NULL, cq_main, &srv->cqs[i]);
	if (pthread_create(&srv->sweeper, NULL, sweeper_main, srv) != 0) {
		/* Without it nothing times out: refuse to run like that. */
		log_error("cannot start the sweeper thread");
		abort();
	}
	log_info("listening on port %d, %s (%d completion queues, %d workers)",
	    srv->port, srv->tls ? "mTLS" : "plaintext", srv->n_cq,
	    srv->n_workers);
}

int
server_start(struct server **out, const struct server_opts *opts,
    const struct rpc_method *methods, size_t n_methods, void *app,
    struct auth *auth)
{
	int r;

	if ((r = server_bind(out, opts, methods, n_methods, auth)) != 0)
		return r;
	server_run(*out, app);
	return 0;
}

/*
 * The calls in flight get the grace period; idle connections get nothing.
 * gRPC's shutdown tag comes only once every connection has closed, and an
 * idle one closes only after its client answers the GOAWAY's ping and the
 * final GOAWAY is written (seconds with a few idle clients, the whole
 * grace with ten). Once no call is left, grpc_server_cancel_all_calls
 * sends each connection a GOAWAY and closes it at once. A call delivered
 * while the shutdown began counts as in flight again: the wait goes on.
 */
static void
stop_calls(struct server *srv)
{
	int64_t end = now_ms() + (srv->grace_ms < 0 ? 0 : srv->grace_ms);
	bool busy, done;
	int live;

	for (;;) {
		int64_t now = now_ms();

		wait_until(srv, no_calls, now < end ? (int)(end - now) : 0);
		/* A moment for the shutdown tag, or for a call delivered late. */
		wait_until(srv, drained, SHUTDOWN_IDLE_MS);
		pthread_mutex_lock(&srv->mu);
		busy = !no_calls(srv);
		done = srv->shutdown_done;
		live = srv->live_calls;
		pthread_mutex_unlock(&srv->mu);
		if (!busy || now_ms() >= end)
			break;
	}
	if (busy) {
		log_warn("grace period over: cancelling %d calls still running",
		    live);
		atomic_store(&srv->hard_cancel, true);
	}
	if (busy || !done)
		grpc_server_cancel_all_calls(srv->gs);
}

void
server_stop(struct server *srv)
{
	if (srv == NULL)
		return;
	atomic_store(&srv->stopping, true);
	grpc_server_shutdown_and_notify(srv->gs, srv->cqs[0].cq, &srv->t_shutdown);
	stop_calls(srv);
	wait_until(srv, drained, -1);

	/* The last denial summaries, while the audit log is open. */
	pthread_mutex_lock(&srv->mu);
	srv->sweeper_stop = true;
	pthread_cond_signal(&srv->sweep_cv);
	pthread_mutex_unlock(&srv->mu);
	pthread_join(srv->sweeper, NULL);
	pthread_mutex_lock(&srv->mu);
	srv->workers_stop = true;
	for (int i = 0; i < srv->n_workers; i++)
		pthread_cond_signal(&srv->workers[i].cv);
	pthread_mutex_unlock(&srv->mu);
	for (int i = 0; i < srv->n_workers; i++) {
		pthread_join(srv->workers[i].thread, NULL);
		pthread_cond_destroy(&srv->workers[i].cv);
	}
	grpc_server_destroy(srv->gs);
	for (int i = 0; i < srv->n_cq; i++)
		grpc_completion_queue_shutdown(srv->cqs[i].cq);
	for (int i = 0; i < srv->n_cq; i++) {
		pthread_join(srv->cqs[i].thread, NULL);
		grpc_completion_queue_destroy(srv->cqs[i].cq);
	}
	pthread_cond_destroy(&srv->state_cv);
	pthread_cond_destroy(&srv->sweep_cv);
	pthread_mutex_destroy(&srv->mu);
	pthread_mutex_destroy(&srv->auth_mu);
	auth_unref(srv->auth);
	denials_free(srv->denials);
	free(srv->tls_cert);
	free(srv->tls_key);
	free(srv->tls_ca);
	free(srv->cqs);
	free(srv->workers);
	free(srv);
}
