/*
 * Counts per key (a principal, or a peer address), for the stream slots
 * and the pending-call pool. The caller holds the lock that guards the list.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/counter.h"

/* The counter of key in *list, created at 0 if absent; NULL if out of memory. */
struct counter *
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
void
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
