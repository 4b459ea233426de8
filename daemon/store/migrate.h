/*
 * Store format upgrades (migrate.c): one step per format version, from N
 * to N+1, run by vaultd --migrate with the daemon stopped.
 *
 * A store records its format version in meta (META_STORE_FORMAT). This
 * vaultd reads STORE_FORMAT_VERSION only; store_open refuses any other
 * with "store format N; this vaultd reads M..K; run vaultd --migrate".
 * The migration runs every step from the store's version up to
 * STORE_FORMAT_VERSION in ONE durable write transaction, the format
 * record last: a crash or a failed step leaves the store as it was, at its
 * old version; there is no half-migrated store. A store newer than this
 * vaultd is never touched (no downgrades).
 *
 * A format change adds its step to the table (and a test with a store at
 * the old version). PostgreSQL stores have no --migrate: steps that change
 * nothing in their tables are applied when the store opens (store_pg.c).
 */
#ifndef VAULT_STORE_MIGRATE_H
#define VAULT_STORE_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct store_migration {
	uint32_t from;			/* upgrades format from to from + 1 */
	const char *what;		/* one line for the log */
	int (*apply)(struct store_txn *txn);
};

/*
 * Migrates the store in dir to STORE_FORMAT_VERSION with the built-in
 * steps. *from and *to: the versions before and after (equal: nothing to
 * do). VAULT_ERR_STATE (logged, nothing written) when the store is newer
 * than this vaultd or a step is missing.
 */
int store_migrate(const char *dir, size_t map_size, uint32_t *from,
    uint32_t *to) VAULT_WUR;

/* The same with a given table and target: for tests of the framework. */
int store_migrate_steps(const char *dir, size_t map_size,
    const struct store_migration *steps, size_t n, uint32_t target,
    uint32_t *from, uint32_t *to) VAULT_WUR;

#endif
