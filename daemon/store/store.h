/*
 * The LMDB environment and its named databases.
 *
 * Readers open their own read-only transactions (MDB_NOTLS, so a read
 * transaction is not tied to a thread); every write goes through the writer
 * thread (writer.h). Values returned by mdb_get die with their transaction:
 * decrypt or copy them before it ends.
 *
 * A fatal LMDB error (panic, corruption) marks the store failed: every later
 * call gets VAULT_ERR_UNAVAILABLE at once instead of limping on.
 */
#ifndef VAULT_STORE_H
#define VAULT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "util/vault_err.h"

#define STORE_FORMAT_VERSION 1

struct store {
	MDB_env *env;
	MDB_dbi consumers;	/* ref -> consumer record */
	MDB_dbi attrs;		/* ref | name -> attribute record */
	MDB_dbi consents;	/* ref | purpose -> consent record */
	MDB_dbi counts;		/* attribute | token -> consumers holding it */
	MDB_dbi lineage;	/* ref -> dataset numbers (dupsort) */
	MDB_dbi datasets;	/* dataset id -> number */
	MDB_dbi ledger;		/* seq -> deletion event */
	MDB_dbi audit;		/* seq -> audit entry */
	MDB_dbi audit_ref;	/* consumer ref -> seq (dupsort): access history */
	MDB_dbi meta;		/* name -> store and keyring state */
	MDB_dbi requests;	/* request records (deletion receipts, ...) */
	MDB_dbi gc;		/* ref -> deleted ms: attributes left to collect */
	MDB_dbi manifests;	/* ref -> the consumer's attribute manifest */
	volatile int failed;
	/* The headroom (store_set_headroom); refusing: store_room's last answer. */
	int high_water_pct;
	size_t disk_reserve;
	int refusing;
};

/*
 * Opens (creating when absent) the environment in dir, which must exist.
 * map_size is the largest the data file may grow. Refuses, having written
 * nothing, a data file shorter than the store it holds (truncated), a store
 * of another format version, or a file that is not an LMDB store.
 */
int store_open(struct store **out, const char *dir, size_t map_size) VAULT_WUR;

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
 * the disk reserve. Sets the reserve up at once; never fails the start.
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

/* Begins a read-only transaction; VAULT_ERR_UNAVAILABLE once failed. */
int store_read_begin(struct store *st, MDB_txn **txn) VAULT_WUR;

/*
 * Maps an LMDB return code to a vault error, logging it and marking the store
 * failed when it is fatal. what names the operation, for the log.
 */
int store_err(struct store *st, int mdb_rc, const char *what);

/* Within a write txn: deletes every record of dbi whose key starts with prefix. */
int store_delete_prefix(struct store *st, MDB_txn *txn, MDB_dbi dbi,
    const void *prefix, size_t len) VAULT_WUR;

/* Big-endian fixed-width encodings used in keys and records. */
void store_put_u32(uint8_t *p, uint32_t v);
void store_put_u64(uint8_t *p, uint64_t v);
uint32_t store_get_u32(const uint8_t *p);
uint64_t store_get_u64(const uint8_t *p);

/* Wall-clock milliseconds since the epoch. */
uint64_t store_now_ms(void);

#endif
