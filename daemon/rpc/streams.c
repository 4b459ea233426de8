/*
 * Stream slots: how many server streams may be open at once, in all, per
 * principal, and (for the unauthenticated ones) per peer address.
 */
#include <stdbool.h>

#include "rpc/counter.h"
#include "rpc/denial.h"
#include "rpc/internal.h"
#include "rpc/streams.h"

static bool
is_public(const struct rpc_ctx *c)
{
	return (c->m->flags & RPC_PUBLIC) != 0;
}

/* Gives back the stream slot c holds; under srv->mu. */
void
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

/*
 * Takes a stream slot for c, under srv->mu: authenticated streams share
 * max_streams and each principal has at most max_streams_per_principal;
 * unauthenticated ones (health Watch) have a pool of their own, at most
 * max_public_streams_per_peer an address, so they never crowd out the
 * others and one host cannot take the whole pool. Returns 0, or the refusal set on c.
 */
int
stream_slot_take(struct rpc_ctx *c)
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
