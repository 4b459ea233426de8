/*
 * The LMDB backend's own view of the store: for daemon/store/ only.
 * Everything else, the golden-bytes test included, goes through store.h.
 *
 * Its handles embed store.c's (backend.h) first: a struct store * of this
 * backend is a struct lmdb_store *, a transaction a struct lmdb_txn *, a
 * cursor a struct lmdb_cursor *. The store is the environment's user
 * context (mdb_env_set_userctx).
 */
#ifndef VAULT_STORE_LMDB_H
#define VAULT_STORE_LMDB_H

#include <lmdb.h>
#include <pthread.h>

#include "store/backend.h"
#include "store/wal.h"

struct lmdb_store {
	struct store base;
	MDB_env *env;
	union {
		MDB_dbi dbi[STORE_SPACES];	/* by enum store_space */
		struct {
			MDB_dbi consumers, attrs, consents, counts, lineage,
			    datasets, ledger, audit, audit_ref, meta, requests,
			    gc, manifests, deletions, lineage_rows;
		};
	};
	/* The format version the store recorded; any_format: opened anyway. */
	uint32_t format;
	bool any_format;
	char *dir;
	/* The write-ahead journal (wal.h): journaling, or a crash's to replay. */
	struct wal *wal;
	struct wal_pending pending;
	bool shared;			/* opened by one of several processes */
	bool foreign;			/* shared, and a journal is in use */
	/* Effect buffers of write transactions, reused (wal.h). */
	pthread_mutex_t pool_mu;
	struct wal_buf *pool;
};

struct lmdb_cursor;

struct lmdb_txn {
	struct store_txn base;
	MDB_txn *t;
	bool rdonly, nested;
	struct lmdb_txn *parent;	/* a nested txn's */
	bool poisoned;			/* a write the journal missed */
	/* Its effects, for the journal (a write txn while journaling). */
	struct wal_buf *ops;
	/* Its open cursors: LMDB ends a write txn's with it, not a reader's. */
	struct lmdb_cursor *cursors;
};

struct lmdb_cursor {
	struct store_cursor base;
	MDB_cursor *c;
	struct lmdb_cursor *next, **prev;	/* in its txn's list */
};

/* The LMDB store behind st, or NULL when st is of another backend. */
struct lmdb_store *store_lmdb(struct store *st);

static inline MDB_txn *
store_mdb_txn(struct store_txn *txn)
{
	return ((struct lmdb_txn *)txn)->t;
}

/*
 * Maps an LMDB return code to a vault error, logging it and marking the store
 * failed when it is fatal. what names the operation, for the log.
 */
int store_err(struct store *st, int mdb_rc, const char *what);

/*
 * store_open, but with any_format a store of another format version opens
 * too (st->format says which): for the migration only (store_migrate.c).
 */
int store_open_lmdb(struct store **out, const char *dir, size_t map_size,
    bool any_format, bool exclusive) VAULT_WUR;
/*
 * The store's format version, read without writing anything (a read-only
 * environment without the lock file): for the migration's checks.
 */
int store_probe_format(const char *dir, uint32_t *format) VAULT_WUR;
/* Logs why a store of format found is refused, with what this vaultd reads. */
void store_format_refusal(uint32_t found);

#endif
