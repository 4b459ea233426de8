/*
 * Counts per key (a principal, or a peer address): a short list, searched
 * in order; the caller holds the lock that guards the list (srv->mu).
 */
#ifndef VAULT_RPC_COUNTER_H
#define VAULT_RPC_COUNTER_H

/* A count per key (a principal, or a peer address); under srv->mu. */
struct counter {
	struct counter *next;
	int n;
	char key[];
};

/* The counter of key in *list, created at 0 if absent; NULL if out of memory. */
struct counter *counter_get(struct counter **list, const char *key);
/* Drops one from e (none if it holds none), and e itself at zero. */
void counter_put(struct counter **list, struct counter *e);

#endif
