/*
 * The runtime's side of a call's audit entry, for the worker that runs the
 * handler; the handler's side is rpc.h (rpc_audit_*).
 */
#ifndef VAULT_RPC_CTX_H
#define VAULT_RPC_CTX_H

#include <stdbool.h>

struct rpc_ctx;

/* Who called what, and how it went: the runtime's part of the entry. */
void ctx_audit_fill(struct rpc_ctx *c, const char *outcome);
/* Whether a call of this method that gets through leaves an audit entry. */
bool ctx_audits_success(const struct rpc_ctx *c);
/* Writes the call's audit entry once; fail closed (VAULT_ERR_UNAVAILABLE). */
int ctx_audit_now(struct rpc_ctx *c, int err);

#endif


