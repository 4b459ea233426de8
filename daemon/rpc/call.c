/*
 * A call's references and how it ends. Each started batch holds a
 * reference, and the call holds one of its own from its arrival until its
 * final batch completes; the call is freed when the last one is dropped.
 * A call ends with call_finish (the status, after any reply) or, refused
 * for a limit before it was read, call_reset (RST_STREAM). Vault errors
 * become gRPC statuses here and nowhere else.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>

#include "rpc/alloc.h"
#include "rpc/call.h"
#include "rpc/internal.h"
#include "util/log.h"

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

void
call_ref(struct rpc_ctx *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void
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

void
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

grpc_call_error
call_start_batch(struct rpc_ctx *c, const grpc_op *ops, size_t n, struct tag *t)
{
	grpc_call_error e;

	call_ref(c);
	if ((e = grpc_call_start_batch(c->call, ops, n, t, NULL)) != GRPC_CALL_OK) {
		log_error("grpc_call_start_batch: error %d", (int)e);
		atomic_fetch_sub(&c->refs, 1);
	}
	return e;
}

void
call_on_final(struct tag *t, bool ok)
{
	(void)ok;
	call_unref(t->call);	/* the batch's reference */
	call_unref(t->call);	/* the call's own reference, held since arrival */
}

/*
 * Counts the call's end, and writes its one debug line: method (from the
 * table, never the path the client sent), principal, status, duration.
 * Never a field of the request: no consumer id, value or token.
 */
static void
call_account(struct rpc_ctx *c, grpc_status_code code, int err)
{
	int64_t us = now_us() - c->start_us;
	struct log_field f[5];
	size_t n = 0;

	rpc_stats_call(c->srv->stats, call_slot(c), (int)code, us);
	if (c->deny != 0)
		rpc_stats_denied(c->srv->stats, (enum rpc_deny)(c->deny - 1));
	if (!log_enabled(LOG_LEVEL_DEBUG))
		return;
	f[n++] = LOG_FIELD_STR("method", c->m != NULL ? c->m->path : "unknown");
	f[n++] = LOG_FIELD_STR("principal", c->principal != NULL ?
	    c->principal->name : "-");
	f[n++] = LOG_FIELD_STR("status", rpc_status_name((int)code));
	f[n++] = LOG_FIELD_REAL("duration_ms", (double)us / 1000.0);
	/* The caller-facing message: written to leak nothing (STYLE.md 8). */
	if (err != 0 && code != GRPC_STATUS_NOT_FOUND &&
	    code != GRPC_STATUS_CANCELLED)
		f[n++] = LOG_FIELD_STR("error", c->errmsg);
	log_fields(LOG_LEVEL_DEBUG, "call", f, n, "call");
}

/* Sends initial metadata if not yet sent, the reply if any, and the status. */
void
call_finish(struct rpc_ctx *c, int err)
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
	call_account(c, code, err);
	if (call_start_batch(c, ops, n, &c->t_final) != GRPC_CALL_OK)
		call_unref(c);	/* no completion will come to drop the call's own */
}

void
call_on_send(struct tag *t, bool ok)
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

void
call_on_close(struct tag *t, bool ok)
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
void
call_reset(struct rpc_ctx *c, int err)
{
	if (c->errmsg[0] == '\0')
		snprintf(c->errmsg, sizeof(c->errmsg), "%s", default_message(err));
	call_account(c, status_from_err(err), err);
	grpc_call_cancel_with_status(c->call, status_from_err(err), c->errmsg,
	    NULL);
	call_unref(c);	/* no final batch will come to drop the call's own */
}
