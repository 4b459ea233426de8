/*
 * Opening a store by its settings (store_params): the one place that knows
 * every backend's entry point. Apart from backend.c so that no backend's
 * header includes what includes it.
 */
#include "store/store.h"
#include "store/store_pg.h"

int
store_open_params(struct store **out, const struct store_params *p)
{
	if (p->kind == STORE_KIND_POSTGRESQL)
		return store_open_pg(out, p);
	return p->exclusive ? store_open(out, p->dir, p->map_size) :
	    store_open_shared(out, p->dir, p->map_size);
}

int
store_exists_params(const struct store_params *p, bool *exists)
{
	if (p->kind == STORE_KIND_POSTGRESQL)
		return store_exists_pg(p, exists);
	return store_exists(p->dir, exists);
}
