/*
 * The pending-call pool: calls awaiting their request message (see
 * pending.c). Each function takes srv->mu itself.
 */
#ifndef VAULT_RPC_PENDING_H
#define VAULT_RPC_PENDING_H

#include <stdint.h>

struct rpc_ctx;
struct server;

/* Counts c as awaiting its message: 0, or the refusal set on c. */
int pending_add(struct rpc_ctx *c);
/* The message came (or never will): c no longer counts as waiting. */
void pending_done(struct rpc_ctx *c);
/* Cancels the calls whose message is overdue at now (monotonic ms). */
void pending_sweep(struct server *srv, int64_t now);

#endif


