/*
 * A call's references, its batches and how it ends (see call.c).
 */
#ifndef VAULT_RPC_CALL_H
#define VAULT_RPC_CALL_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>

struct rpc_ctx;
struct tag;

void call_ref(struct rpc_ctx *c);
/* Frees c at once: a call that never arrived, or its last reference. */
void call_free(struct rpc_ctx *c);
/* Drops one reference; the last one frees c and counts it out of live_calls. */
void call_unref(struct rpc_ctx *c);
/* Starts a batch on c holding a reference for it; t's completion drops it. */
grpc_call_error call_start_batch(struct rpc_ctx *c, const grpc_op *ops,
    size_t n, struct tag *t);

/* Sends initial metadata if not yet sent, the reply if any, and the status. */
void call_finish(struct rpc_ctx *c, int err);
/*
 * Ends an anonymous call refused for a limit with RST_STREAM instead of a
 * status (see call.c); drops the call's own reference.
 */
void call_reset(struct rpc_ctx *c, int err);

/* Completions of the final, send and close batches (tags set by cq.c). */
void call_on_final(struct tag *t, bool ok);
void call_on_send(struct tag *t, bool ok);
void call_on_close(struct tag *t, bool ok);

#endif


