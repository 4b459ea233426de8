/*
 * The storage interface: named key spaces of ordered byte keys, read
 * transactions, the writer's group commit (writer.h), ordered cursors.
 * Behind it: LMDB (store_lmdb.c, the embedded default) or PostgreSQL
 * (store_pg.c), chosen at open (store_open_params). Nothing above
 * daemon/store/ sees which: each backend fills the operations of backend.h.
 *
 * CONTRACT
 *  - Key spaces (enum store_space) are fixed: the backend creates them all
 *    at open. Keys are 1..STORE_KEY_MAX bytes; values up to the map
 *    size, except in dup spaces: 1..STORE_KEY_MAX bytes. Keys sort
 *    bytewise (memcmp, a shorter key before its extensions); cursors move
 *    in that order.
 *  - Dup spaces (STORE_LINEAGE, STORE_AUDIT_REF) hold a sorted set of
 *    values per key (values sort bytewise, no two equal): a put adds a
 *    value, store_del with a value removes that one, without removes all.
 *    The other spaces hold one value per key; a put replaces it.
 *  - Isolation: a read transaction is a consistent snapshot of the last
 *    commit before it began; it never sees later writes. Any thread may
 *    end it (not tied to a thread); it must not be used by two threads at
 *    once. There is one writer (writer.h): every write runs there, each
 *    request in its own nested transaction inside the group's, so a failed
 *    request leaves nothing while its group commits. A write transaction
 *    sees its own writes. After an error other than VAULT_ERR_NOT_FOUND
 *    and VAULT_ERR_EXISTS, a write transaction may not be used again: the
 *    job returns the error and the writer drops its nested transaction.
 *  - Durability: writer_submit returns once the group's commit is on disk
 *    (fsync); writer_submit_lazy once committed, on disk within 20 ms.
 *    store_write_begin/commit (start-up only, no writer running) is
 *    durable on return.
 *  - Lifetime: a store_val's data points into the store and is valid until
 *    its transaction ends or the next write in it (put/del/cursor write),
 *    to any space, and at most for the next STORE_KEEP_READS reads (gets
 *    or cursor moves) of its transaction (PostgreSQL bounds what a long
 *    walk keeps): copy or decrypt it before. Never write through it.
 *  - Cursors: a cursor stays valid, on its entry, across writes in its
 *    transaction to other spaces and to its own space through itself (its
 *    key and value must be read again: the lifetime rule above). After
 *    store_cursor_replace it stays on the entry; after store_cursor_del it
 *    stands on the entry that followed (below).
 *  - Errors: 0, or a vault error. VAULT_ERR_NOT_FOUND: no such key (or no
 *    further entry for a cursor move); VAULT_ERR_EXISTS: a put with
 *    STORE_NOOVERWRITE / STORE_NODUPDATA found the key / value;
 *    VAULT_ERR_LIMIT: the map is full or too many readers;
 *    VAULT_ERR_NOSPACE: the disk is full; VAULT_ERR_UNAVAILABLE: the store
 *    cannot answer now: fatal when store_failed() says so (corruption,
 *    panic: every later transaction is refused at once), else retryable
 *    (PostgreSQL: a lost connection, a failover, a serialization failure,
 *    the writers' lock not granted in time); VAULT_ERR_STORE: anything else.
 *    The store logs each error other than NOT_FOUND and EXISTS.
 *  - Allocation: gets, puts, deletes and cursor moves allocate nothing
 *    (PostgreSQL: nothing beyond libpq's results; LMDB journaling: the
 *    transaction's record buffer grows, and is reused); beginning a
 *    transaction or opening a cursor may.
 */
#ifndef VAULT_STORE_H
#define VAULT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

/*
 * 1: the first; 2 (2026-12): lineage in stream order (lineage_rows), which
 * an older vaultd would not read, so it must refuse the store; 3: consumers
 * of one values record; 4: consumers whose header is bound into the wrapped
 * DEK (record.h). Steps: migrate.c.
 */
#define STORE_FORMAT_VERSION 4
/* Reads after which a store_val may die (Lifetime, below). */
#define STORE_KEEP_READS 7
/* The longest key a store must take (LMDB's default limit). */
#define STORE_KEY_MAX 511

struct store;
struct store_txn;
struct store_cursor;

/* Named key spaces (the LMDB backend: one named database each). */
enum store_space {
	STORE_CONSUMERS,	/* ref -> consumer record */
	STORE_ATTRS,		/* ref | name -> attribute record */
	STORE_CONSENTS,		/* ref | purpose -> consent record */
	STORE_COUNTS,		/* attribute | token -> consumers holding it */
	STORE_LINEAGE,		/* ref -> dataset numbers (dup): written before
				   lineage_rows; read, no longer written */
	STORE_DATASETS,		/* dataset id -> number */
	STORE_LEDGER,		/* seq -> deletion event */
	STORE_AUDIT,		/* seq -> audit entry */
	STORE_AUDIT_REF,	/* consumer ref -> seq (dup): access history */
	STORE_META,		/* name -> store and keyring state (meta.h) */
	STORE_REQUESTS,		/* request records (deletion receipts, ...) */
	STORE_GC,		/* ref -> deleted ms [| 1: lineage left]: to collect */
	STORE_MANIFESTS,	/* ref -> the consumer's attribute manifest */
	STORE_DELETIONS,	/* seq -> a deletion, for restores (dellog.h) */
	STORE_LINEAGE_ROWS,	/* dataset | position | ref -> "": lineage.h */
	STORE_CONSENT_LEDGER,	/* seq -> consent revocation event (ledger.h) */
	STORE_DROP,		/* DROP identifiers' keyed forms (drop.h) */
	STORE_SPACES
};

/* A borrowed key or value: see Lifetime above. (Fields in MDB_val's order.) */
struct store_val {
	size_t len;
	const void *data;
};

/* Which backend holds the store, and where (the store_* settings). */
enum store_kind { STORE_KIND_LMDB, STORE_KIND_POSTGRESQL };

struct store_params {
	enum store_kind kind;
	const char *dir;		/* LMDB: the store directory */
	size_t map_size;		/* LMDB: the largest the file may grow */
	const char *conninfo;		/* PostgreSQL: a libpq conninfo string */
	unsigned pool_size;		/* PostgreSQL: read connections, at most */
	unsigned connect_timeout_s;	/* PostgreSQL: how long a lost
					 * connection is retried (failover) */
	bool exclusive;			/* LMDB: this process alone writes the
					 * store (it holds the store lock): it
					 * recovers the journal and may keep one */
};

/*
 * Opens (creating when absent) the store p names: store_open for LMDB,
 * store_open_pg (store_pg.h) for PostgreSQL.
 */
int store_open_params(struct store **out,
    const struct store_params *p) VAULT_WUR;
/* store_exists for the store p names (PostgreSQL: the schema holds one). */
int store_exists_params(const struct store_params *p, bool *exists) VAULT_WUR;
/* "lmdb" or "postgresql": the backend of an open store. */
const char *store_backend_name(const struct store *st);
/*
 * Whether a read or write of one key runs in this process (LMDB: a tree
 * walk, microseconds) or costs a round trip to a server (PostgreSQL): for
 * callers that trade one kind of work for the other.
 */
bool store_in_process(const struct store *st);

/*
 * LMDB: opens (creating when absent) the store in dir, which must exist.
 * map_size is the largest the data file may grow. Refuses, having written
 * nothing, a data file shorter than the store it holds (truncated), a store
 * of another format version, or a file that is not a store. store_open
 * takes the store as this process's alone (store_params.exclusive);
 * store_open_shared as one of several processes: a store another process
 * journals (or whose journal awaits recovery) is then only read.
 */
int store_open(struct store **out, const char *dir, size_t map_size) VAULT_WUR;
int store_open_shared(struct store **out, const char *dir,
    size_t map_size) VAULT_WUR;

/*
 * Whether dir holds a store: a data file that is not empty. A missing
 * directory or data file, or an empty data file, holds none (LMDB would
 * start a new store there). VAULT_ERR_IO when it cannot tell.
 */
int store_exists(const char *dir, bool *exists) VAULT_WUR;
void store_close(struct store *st);

/*
 * Headroom: space kept for what must always work (deletions, opt-outs, the
 * audit log). Ordinary writes (puts, opt-ins, rotation starts, rekeys) call
 * store_room first and are refused once
 *  - the pages in use pass high_water_pct of the map size: VAULT_ERR_LIMIT
 *    ("store is full"); the rest of the map is the headroom;
 *  - the filesystem cannot keep disk_reserve bytes allocated past the end
 *    of the data file (fallocate, FALLOC_FL_KEEP_SIZE): VAULT_ERR_NOSPACE
 *    ("disk full"). LMDB writes its new pages into that space, which the
 *    vault already owns, so the writes that go on need no free disk.
 * Writes that free space or must never fail do not call it. 0 disables
 * the disk reserve. The reserve is taken at the first store_room; never
 * fails the start.
 */
void store_set_headroom(struct store *st, int high_water_pct,
    size_t disk_reserve);
/*
 * 0 when an ordinary write may go ahead; else VAULT_ERR_LIMIT or
 * VAULT_ERR_NOSPACE (above). Renews the disk reserve as the file grows
 * into it; logs when the answer changes. Any thread; not inside a read txn.
 */
int store_room(struct store *st);
/* store_room's last answer, without checking again (for health). */
int store_refusing(const struct store *st);
/* True once a fatal error marked the store failed (every call refused). */
bool store_failed(const struct store *st);

/* The data file's size and use, for the metrics endpoint (no scan). */
struct store_usage {
	uint64_t map_bytes;		/* the map size: the most the file may grow */
	uint64_t file_bytes;		/* the data file's size on disk */
	uint64_t used_bytes;		/* pages up to the last one in use (free
					 * pages below it included) */
	int high_water_pct;		/* ordinary writes stop past this % */
};
int store_usage(struct store *st, struct store_usage *out) VAULT_WUR;

/* Flushes committed writes to disk (fsync). */
int store_sync(struct store *st) VAULT_WUR;

/*
 * The write-ahead journal of a single node's LMDB store (store/wal.h,
 * docs/architecture.md): once started, every commit is made durable by
 * one sequential append and fdatasync of a record of its effects, MACed
 * under key (STORE_JOURNAL_KEY_BYTES), and LMDB's own syncs run once per
 * checkpoint. A process that stopped without closing the store leaves a
 * checkpoint and records after it: store_open then restores the
 * checkpoint, and reads see the store as of it until
 * store_journal_replay applies the records (writes are refused until
 * then). Backends without a journal (PostgreSQL): pending is false, and
 * replay, start and checkpoint do nothing.
 *
 * store_journal_start: only one process may write the store (no
 * replicas), with no writer running yet. store_checkpoint: makes every
 * commit so far part of the checkpoint a recovery starts from (before a
 * key file is wiped: a recovery opens the keyring as of the checkpoint).
 */
#define STORE_JOURNAL_KEY_BYTES 32
bool store_journal_pending(const struct store *st);
/* A store opened shared that another process journals, or left to recover. */
bool store_journal_foreign(const struct store *st);
int store_journal_replay(struct store *st, const uint8_t *key) VAULT_WUR;
int store_journal_start(struct store *st, const uint8_t *key) VAULT_WUR;
int store_checkpoint(struct store *st) VAULT_WUR;

/* ------------------------------------------------------ transactions */

/* Begins a read transaction (a snapshot); VAULT_ERR_UNAVAILABLE once failed. */
int store_read_begin(struct store *st, struct store_txn **txn) VAULT_WUR;
/*
 * A read transaction that may run long (a feature snapshot, an audit
 * scan): a backend with a bounded pool of connections (PostgreSQL) lets
 * such readers hold only part of it, so they cannot starve short calls.
 */
int store_read_begin_bulk(struct store *st, struct store_txn **txn) VAULT_WUR;
/* Ends a read transaction. NULL-safe. */
void store_read_end(struct store_txn *txn);

/*
 * A write transaction outside the writer, for start-up (the keyring's
 * first records) and tests: only while no writer runs. Commit is durable;
 * abort (NULL-safe) writes nothing. Commit ends the txn even on failure.
 */
int store_write_begin(struct store *st, struct store_txn **txn) VAULT_WUR;
int store_write_commit(struct store_txn *txn) VAULT_WUR;
void store_write_abort(struct store_txn *txn);

/* The store a transaction belongs to. */
struct store *store_txn_store(struct store_txn *txn);

/* ------------------------------------------------------ get, put, delete */

/* The value of key; VAULT_ERR_NOT_FOUND when absent (dup: the first). */
int store_get(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, struct store_val *val) VAULT_WUR;

#define STORE_NOOVERWRITE 0x1	/* VAULT_ERR_EXISTS when the key exists */
#define STORE_NODUPDATA 0x2	/* dup: VAULT_ERR_EXISTS when the value exists */
/*
 * The key sorts after every key in the space (a log's next entry), which
 * the backend checks: a key out of order fails with VAULT_ERR_STORE and
 * overwrites nothing. Not in dup spaces.
 */
#define STORE_APPEND 0x4

/*
 * Writes key -> data (flags: STORE_*, above). Write txns only. In a dup
 * space a pair already there is left as it is (0, or VAULT_ERR_EXISTS
 * under STORE_NODUPDATA): no LMDB page is copied and nothing is journaled
 * for it (LMDB looks the pair up first; PostgreSQL inserts ON CONFLICT DO
 * NOTHING).
 */
int store_put(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *data, size_t len, unsigned flags) VAULT_WUR;

/*
 * Deletes key (dup: only the value dup/duplen when dup is not NULL);
 * VAULT_ERR_NOT_FOUND when absent. Write txns only.
 */
int store_del(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *dup, size_t duplen) VAULT_WUR;

/* Deletes every entry of sp whose key starts with prefix (len >= 1). */
int store_delete_prefix(struct store_txn *txn, enum store_space sp,
    const void *prefix, size_t len) VAULT_WUR;

/* The number of entries in sp (dup: values), as this txn sees them. */
int store_count(struct store_txn *txn, enum store_space sp,
    size_t *n) VAULT_WUR;

/* ------------------------------------------------------ cursors */

/*
 * Cursor moves. key and val are in/out: the moves that take a key (SEEK,
 * SET, GET_BOTH, SEEK_DUP) read it from *key (and *val), and every move
 * leaves the entry it reached in *key and *val. VAULT_ERR_NOT_FOUND when
 * there is no such entry (the cursor's position is then unspecified).
 */
enum store_move {
	STORE_FIRST,		/* the first entry */
	STORE_LAST,		/* the last entry (dup: its last value) */
	STORE_NEXT,		/* the next entry (dup: value, then key) */
	STORE_PREV,		/* the previous entry */
	STORE_SEEK,		/* the first key >= *key */
	STORE_SET,		/* exactly *key (dup: its first value) */
	STORE_NEXT_DUP,		/* dup: the next value of the same key */
	STORE_GET_BOTH,		/* dup: exactly *key and *val */
	STORE_SEEK_DUP,		/* dup: *key, its first value >= *val */
	STORE_CURRENT,		/* the entry the cursor is on (see _del) */
};

/* A cursor over sp; it dies with txn at the latest. close is NULL-safe. */
int store_cursor_open(struct store_txn *txn, enum store_space sp,
    struct store_cursor **cur) VAULT_WUR;
void store_cursor_close(struct store_cursor *cur);
int store_cursor_get(struct store_cursor *cur, struct store_val *key,
    struct store_val *val, enum store_move op) VAULT_WUR;
/* Write txns: replaces the value at the cursor (not in dup spaces). */
int store_cursor_replace(struct store_cursor *cur, const void *data,
    size_t len) VAULT_WUR;
/*
 * Write txns: deletes the entry at the cursor, which then stands on the
 * entry that followed it: STORE_CURRENT and STORE_NEXT both read that one
 * (VAULT_ERR_NOT_FOUND past the end), so a walk that deletes as it goes
 * visits every entry.
 */
int store_cursor_del(struct store_cursor *cur) VAULT_WUR;

/* ------------------------------------------------------ encodings */

/* Big-endian fixed-width encodings used in keys and records. */
void store_put_u32(uint8_t *p, uint32_t v);
void store_put_u64(uint8_t *p, uint64_t v);
uint32_t store_get_u32(const uint8_t *p);
uint64_t store_get_u64(const uint8_t *p);

/* Wall-clock milliseconds since the epoch (shifted, for tests: below). */
uint64_t store_now_ms(void);
/*
 * Tests only (a --dev vault, VAULTD_DEV_CLOCK_SHIFT_S): every later
 * store_now_ms is ms later, so retention and other expiry can be tested
 * without sleeping. Set once, before any thread starts.
 */
void store_clock_shift(int64_t ms);

#endif
