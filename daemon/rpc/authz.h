/*
 * Authorization of a call as it arrives (see authz.c).
 */
#ifndef VAULT_RPC_AUTHZ_H
#define VAULT_RPC_AUTHZ_H

struct rpc_ctx;

/* The deny reason of a call whose metadata was refused. */
#define DENY_METADATA "invalid metadata"

/*
 * Takes the current policy for c (c->auth), checks its metadata, resolves
 * c->principal and checks the policy: 0, or the refusal set on c, with
 * c->deny_reason set when the caller failed to authenticate.
 */
int authz_check(struct rpc_ctx *c);

#endif


