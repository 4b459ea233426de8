/*
 * The handler API: the functions of rpc.h, behind the opaque struct
 * rpc_ctx, and the call's audit entry (what the runtime fills in, and the
 * fail-closed write when no handler write carried it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "rpc/alloc.h"
#include "rpc/call.h"
#include "rpc/ctx.h"
#include "rpc/internal.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/utf8.h"

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
void
ctx_audit_fill(struct rpc_ctx *c, const char *outcome)
{
	c->audit.principal = c->principal ? c->principal->name : "-";
	c->audit.method = c->m->path;
	c->audit.outcome = outcome;
}

/* Whether a call of this method that gets through leaves an audit entry. */
bool
ctx_audits_success(const struct rpc_ctx *c)
{
	return c->srv->sink != NULL &&
	    !(c->m->flags & (RPC_PUBLIC | RPC_AUDIT_DENIALS_ONLY));
}

/* Writes the call's audit entry once; fail closed. */
int
ctx_audit_now(struct rpc_ctx *c, int err)
{
	if (c->audited || c->srv->sink == NULL || c->m == NULL ||
	    (c->m->flags & RPC_PUBLIC) ||
	    (c->early_err == 0 && !ctx_audits_success(c)))
		return 0;
	c->audited = true;
	ctx_audit_fill(c, outcome_of(err));
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
	rpc_stats_sent(c->srv->stats, call_slot(c),
	    grpc_byte_buffer_length(c->reply), 0);
	return 0;
}

/* Ends a call whose client read nothing for stall_ms (rpc_send_within). */
static int
stalled(struct rpc_ctx *c, int stall_ms)
{
	int err = rpc_fail(c, VAULT_ERR_DEADLINE, "the client read nothing for "
	    "%d ms; the stream is ended", stall_ms);

	grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
	    c->errmsg, NULL);
	return err;
}

/* Under c->mu: waits for the previous send; false when stall_ms passed. */
static bool
wait_send_done(struct rpc_ctx *c, int stall_ms)
{
	struct timespec ts;

	if (stall_ms < 0) {
		while (c->send_pending && !c->closed)
			pthread_cond_wait(&c->cv, &c->mu);
		return true;
	}
	ts = time_after_ms(stall_ms);
	while (c->send_pending && !c->closed)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT)
			return !(c->send_pending && !c->closed);
	return true;
}

static int
send_message(struct rpc_ctx *c, const ProtobufCMessage *msg, int stall_ms)
{
	grpc_op ops[2];
	size_t n = 0;

	if (c->m->kind == RPC_UNARY)
		abort();
	if (rpc_cancelled(c))
		return VAULT_ERR_CANCELLED;
	if (ctx_audit_now(c, 0) != 0)
		return VAULT_ERR_UNAVAILABLE;
	pthread_mutex_lock(&c->mu);
	if (!wait_send_done(c, stall_ms)) {
		pthread_mutex_unlock(&c->mu);
		return stalled(c, stall_ms);
	}
	if (c->closed || c->send_failed) {
		pthread_mutex_unlock(&c->mu);
		return VAULT_ERR_CANCELLED;
	}
	wipe_byte_buffer(c->send_buf);
	c->send_buf = pack(msg);
	rpc_stats_sent(c->srv->stats, call_slot(c),
	    grpc_byte_buffer_length(c->send_buf), 1);
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = c->send_buf;
	c->send_pending = true;
	if (call_start_batch(c, ops, n, &c->t_send) != GRPC_CALL_OK) {
		c->send_pending = false;
		c->send_failed = true;
	}
	pthread_mutex_unlock(&c->mu);
	return c->send_failed ? VAULT_ERR_CANCELLED : 0;
}

int
rpc_send(struct rpc_ctx *c, const ProtobufCMessage *msg)
{
	return send_message(c, msg, -1);
}

int
rpc_send_within(struct rpc_ctx *c, const ProtobufCMessage *msg, int stall_ms)
{
	return send_message(c, msg, stall_ms);
}
