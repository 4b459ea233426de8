/*
 * The PostgreSQL backend (store_pg.c): for daemon/store/ only. open.c's
 * store_open_params and store_exists_params call these for
 * STORE_KIND_POSTGRESQL; everything else goes through store.h.
 *
 * The store lives in the schema "vaultd" of the database p->conninfo
 * names (two tables, kv and dup: see store_pg.c). Several vaultd processes
 * may open the same database: their writers serialize on an advisory lock,
 * each reader sees a snapshot of the last commit before it began.
 */
#ifndef VAULT_STORE_PG_H
#define VAULT_STORE_PG_H

#include <stdbool.h>

#include "store/store.h"

/*
 * Opens the store p names, creating the schema and its format record when
 * absent (one transaction, under the writers' advisory lock, so replicas
 * starting at once do not race). Refuses a store of another format version
 * (VAULT_ERR_STATE). A database that cannot be reached within
 * p->connect_timeout_s: VAULT_ERR_UNAVAILABLE, the cause in the log.
 */
int store_open_pg(struct store **out, const struct store_params *p) VAULT_WUR;

/*
 * Whether the database holds a store: the schema's tables and the format
 * record. VAULT_ERR_UNAVAILABLE when the database cannot be reached (the
 * libpq cause in the log, never the password).
 */
int store_exists_pg(const struct store_params *p, bool *exists) VAULT_WUR;

#endif
