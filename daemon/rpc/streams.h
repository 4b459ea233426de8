/*
 * Stream slots (see streams.c). Both functions run under srv->mu.
 */
#ifndef VAULT_RPC_STREAMS_H
#define VAULT_RPC_STREAMS_H

struct rpc_ctx;

/* Takes a stream slot for c: 0, or the refusal set on c (rpc_fail). */
int stream_slot_take(struct rpc_ctx *c);
/* Gives back the stream slot c holds. */
void stream_slot_put(struct rpc_ctx *c);

#endif


