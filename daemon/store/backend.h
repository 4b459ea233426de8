/*
 * What a storage backend implements: for daemon/store/ only. backend.c
 * dispatches every call of store.h through the store's operations; each
 * backend embeds struct store, struct store_txn and struct store_cursor as
 * the first member of its own handles and fills a struct store_ops.
 *
 * Backends: LMDB (store_lmdb.c, the embedded default) and PostgreSQL
 * (store_pg.c). Each keeps the contract of store.h; this header adds what
 * the writer (writer.c) needs beyond it: nested transactions and commits
 * that are durable or not.
 */
#ifndef VAULT_STORE_BACKEND_H
#define VAULT_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct store_ops {
	const char *name;			/* "lmdb", "postgresql" */
	bool in_process;			/* store_in_process */
	void (*close)(struct store *st);

	int (*read_begin)(struct store *st, struct store_txn **txn);
	/* A read that may run long; NULL: read_begin (store_read_begin_bulk). */
	int (*read_begin_bulk)(struct store *st, struct store_txn **txn);
	void (*read_end)(struct store_txn *txn);
	/* A top-level write transaction (the writer's group, or start-up). */
	int (*write_begin)(struct store *st, struct store_txn **txn);
	/* A transaction nested in parent (a write transaction). */
	int (*nested_begin)(struct store_txn *parent, struct store_txn **child);
	/*
	 * Commits txn and ends it, also on failure. Top level: durable on
	 * return when durable is set; otherwise committed and on disk within
	 * the backend's flush interval (store_sync forces it). Nested: into
	 * its parent (durable is ignored).
	 */
	int (*commit)(struct store_txn *txn, bool durable);
	/* Ends txn (nested or not) writing nothing of it. NULL-safe. */
	void (*abort)(struct store_txn *txn);

	int (*get)(struct store_txn *txn, enum store_space sp, const void *key,
	    size_t klen, struct store_val *val);
	int (*put)(struct store_txn *txn, enum store_space sp, const void *key,
	    size_t klen, const void *data, size_t len, unsigned flags);
	int (*del)(struct store_txn *txn, enum store_space sp, const void *key,
	    size_t klen, const void *dup, size_t duplen);
	int (*delete_prefix)(struct store_txn *txn, enum store_space sp,
	    const void *prefix, size_t len);
	int (*count)(struct store_txn *txn, enum store_space sp, size_t *n);

	int (*cursor_open)(struct store_txn *txn, enum store_space sp,
	    struct store_cursor **cur);
	void (*cursor_close)(struct store_cursor *cur);
	int (*cursor_get)(struct store_cursor *cur, struct store_val *key,
	    struct store_val *val, enum store_move op);
	int (*cursor_replace)(struct store_cursor *cur, const void *data,
	    size_t len);
	int (*cursor_del)(struct store_cursor *cur);

	int (*sync)(struct store *st);
	/* store_room's check, without the logging store.c adds. */
	int (*room)(struct store *st);
	int (*usage)(struct store *st, struct store_usage *out);
	/* The write-ahead journal (store.h); NULL: the backend has none. */
	bool (*journal_pending)(const struct store *st);
	bool (*journal_foreign)(const struct store *st);
	int (*journal_replay)(struct store *st, const uint8_t *key);
	int (*journal_start)(struct store *st, const uint8_t *key);
	int (*checkpoint)(struct store *st);
};

/* The part of every backend's store that store.c reads. */
struct store {
	const struct store_ops *ops;
	volatile int failed;		/* a fatal error: refuse every call */
	int refusing;			/* store_room's last answer */
	int high_water_pct;		/* store_set_headroom's */
	size_t disk_reserve;
};

/* The part of every transaction and cursor that store.c reads. */
struct store_txn {
	struct store *st;
};

struct store_cursor {
	struct store_txn *txn;
};

/* The space's name, for logs and the PostgreSQL schema. */
const char *store_space_name(enum store_space sp);
/* Whether sp holds a sorted set of values per key (STORE_LINEAGE, ...). */
bool store_space_dup(enum store_space sp);

/* The writer's transactions (writer.c): see struct store_ops. */
int store_nested_begin(struct store_txn *parent,
    struct store_txn **child) VAULT_WUR;
int store_commit(struct store_txn *txn, bool durable) VAULT_WUR;
void store_abort(struct store_txn *txn);

#endif
