/*
 * The LMDB backend's write-ahead journal: for daemon/store/ only.
 *
 * A durable LMDB commit writes every dirty page at its own place and syncs
 * the data file twice (pages, then the meta page). With the journal, a
 * commit appends one record of the transaction's effects to a sequential
 * file and syncs that once (fdatasync), then commits to LMDB without a
 * sync; LMDB's syncs happen once per checkpoint, off the commit path.
 *
 * Files in the store directory:
 *   wal.0, wal.1   segments, used in turn. A record:
 *                    magic(4) | body length(4) | seq(8) | body | mac(32)
 *                  body: ops, each op(1) | space(1) | klen(2) | vlen(4) |
 *                  key | value, in the order the transaction made them
 *                  (WAL_PUT: key -> value, a dup space adds the value;
 *                  WAL_DEL: the key, or with a value that dup value only;
 *                  WAL_DELPFX: every key starting with key). mac: keyed
 *                  BLAKE2b-256(journal key, "vaultd store journal v1" |
 *                  the bytes before it). Past the last record: zeros.
 *   wal.ckpt       the last checkpoint: the journal sequence S it covers,
 *                  LMDB's two meta pages as they were at S, the hash of
 *                  S's main root page (which data.mdb it belongs to), the
 *                  journal key's check value, under a BLAKE2b-256
 *                  checksum. Exists only while a journaling vaultd runs, or
 *                  after one stopped without closing.
 *
 * Checkpoint (every WAL_CHECKPOINT_MS with new records, once a segment
 * passes WAL_SEGMENT_BYTES, or once the data file grew by a 128th of the map
 * since the last one, at most 4 MiB: the pinned snapshot below keeps LMDB
 * from reusing pages freed after it; wal_wait_room): under the commit lock,
 * note S, copy the meta pages, begin a read transaction (LMDB then reuses no
 * page of S's snapshot until it ends), sync the segment and switch appends
 * to the other one; then, unlocked, sync the data file, write wal.ckpt, end
 * the previous checkpoint's read transaction, and overwrite the old
 * segment's records with zeros (so a deleted consumer's records do not
 * outlive the next checkpoint in the journal).
 *
 * Recovery (wal_restore, before LMDB opens the file): checks that data.mdb
 * still holds S's root page, then writes the meta pages of wal.ckpt back
 * into data.mdb, which makes the store exactly S (S's pages are intact
 * whatever reached the disk after it: the pinned snapshot), then wal_replay
 * applies the records after S in order, syncs, and settles: removes wal.ckpt
 * and zeroes the segments. A bad record with no synced record after it is
 * the mark of a crash mid-append or of lazy records written back out of
 * order (none of them acknowledged as durable) and ends the replay; a bad
 * record followed by a synced one, a gap in the sequence or another key's
 * checkpoint refuses the start.
 */
#ifndef VAULT_STORE_WAL_H
#define VAULT_STORE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "store/store.h"

#define WAL_KEY_BYTES 32
#define WAL_CHECKPOINT_MS 1000
#define WAL_SEGMENT_BYTES (16u << 20)

enum wal_op { WAL_PUT = 1, WAL_DEL = 2, WAL_DELPFX = 3 };

/* A write transaction's effects, in order (reused: see wal_buf_*). */
struct wal_buf {
	uint8_t *p;
	size_t len, cap;
	struct wal_buf *next;		/* in the store's pool */
};

/* Appends one op; VAULT_ERR_NOMEM when the buffer cannot grow. */
int wal_buf_op(struct wal_buf *b, enum wal_op op, enum store_space sp,
    const void *key, size_t klen, const void *val, size_t vlen) VAULT_WUR;
/* Appends src's ops to dst (a nested transaction's, at its commit). */
int wal_buf_join(struct wal_buf *dst, const struct wal_buf *src) VAULT_WUR;

struct wal;

/*
 * The store a journal serves, as the journal sees it: LMDB's environment
 * and key spaces, the store (to mark it failed) and the backend's mapping of
 * LMDB's errors. The journal knows LMDB, not the backend around it.
 */
struct wal_store {
	struct store *st;
	MDB_env *env;
	const MDB_dbi *dbi;		/* by enum store_space */
	int (*err)(struct store *st, int mdb_rc, const char *what);
};

/*
 * What a crash left: the checkpoint restored into the data file, records
 * after it to replay. Filled by wal_restore.
 */
struct wal_pending {
	bool pending;
	uint64_t seq;			/* S: the checkpoint's last record */
	uint64_t txnid;			/* LMDB's transaction id at S */
	uint32_t cur;			/* the segment appends went to after S */
	/*
	 * A read transaction on S, begun as soon as LMDB opened the restored
	 * file and held until the replay settled: nothing written before
	 * (new key spaces) or during the replay may reuse S's pages, which a
	 * crash meanwhile would restore again.
	 */
	MDB_txn *pin;
	uint8_t kcv[16];		/* the journal key's check value */
};

/*
 * Before LMDB opens dir/data.mdb: when wal.ckpt exists, checks it (its
 * checksum, and that data.mdb holds its snapshot's root page) and writes its
 * meta pages back into data.mdb (synced). VAULT_ERR_STATE, logged with
 * what to do, when the checkpoint is damaged or data.mdb was replaced.
 */
int wal_restore(const char *dir, struct wal_pending *out) VAULT_WUR;
/* Whether dir holds wal.ckpt (a journal in use, or left to recover). */
int wal_exists(const char *dir, bool *exists) VAULT_WUR;

/*
 * After LMDB opened the restored store: applies the records after the
 * checkpoint (MACs under key), syncs, removes wal.ckpt and zeroes the
 * segments. *applied: how many records.
 */
int wal_replay(const struct wal_store *s, const char *dir,
    const struct wal_pending *p, const uint8_t key[WAL_KEY_BYTES],
    uint64_t *applied) VAULT_WUR;

/*
 * Starts journaling the store's commits (no checkpoint pending): makes the
 * segments (zeroed), takes the first checkpoint and starts the checkpoint
 * thread. Sets MDB_NOSYNC on the environment. VAULT_ERR_NOSPACE when the
 * segments cannot be made on a full disk (nothing left to recover from).
 */
int wal_start(struct wal **out, const struct wal_store *s, const char *dir,
    const uint8_t key[WAL_KEY_BYTES]) VAULT_WUR;

/*
 * Commits the top-level write transaction t whose effects are ops: appends
 * their record (synced when durable), then commits t. Ends t also on
 * failure; a failure appends nothing that a replay would apply.
 */
int wal_commit(struct wal *w, MDB_txn *t, const struct wal_buf *ops,
    bool durable) VAULT_WUR;

/* Syncs what was appended (the lazy commits' records). */
int wal_sync(struct wal *w) VAULT_WUR;

/*
 * Before a write transaction begins (not under the commit lock): when the
 * data file grew past the mark by three times the step, or is within four
 * steps of the map's end, takes the checkpoint itself first (when there
 * were commits since the last), so that what the pinned snapshot keeps
 * from reuse stays bounded (a step: a 128th of the map, at most 4 MiB)
 * and never fills the map.
 */
void wal_wait_room(struct wal *w);

/*
 * Asks for a checkpoint soon (the map is full: pages the checkpoint's
 * snapshot holds may be freed by the next one). Not under the commit lock.
 */
void wal_nudge(struct wal *w);

/* Takes a checkpoint now and waits for it. */
int wal_checkpoint(struct wal *w) VAULT_WUR;

/*
 * Stops the thread, syncs the data file, removes wal.ckpt and zeroes the
 * segments: the store needs no recovery. Clears MDB_NOSYNC. NULL-safe.
 */
void wal_stop(struct wal *w);

/* The journal's record parser, for the fuzz target and unit tests. */
struct wal_rec {
	uint64_t seq;
	const uint8_t *body;
	size_t len;
};
/*
 * Walks buf[0..len) (a segment's bytes) record by record, checking each
 * one's MAC under key, calling fn on each. *end: where the records end.
 * 0 at zeros or a torn last record (*torn set); VAULT_ERR_STATE with *why
 * when a record fails and non-zero bytes follow it.
 */
int wal_parse(const uint8_t *buf, size_t len, const uint8_t key[WAL_KEY_BYTES],
    int (*fn)(const struct wal_rec *rec, void *arg), void *arg, size_t *end,
    bool *torn, const char **why) VAULT_WUR;

/*
 * Walks a record body's ops; fn gets each. VAULT_ERR_STATE when the body
 * is malformed (before calling fn for anything past the damage).
 */
int wal_body_ops(const uint8_t *body, size_t len,
    int (*fn)(enum wal_op op, enum store_space sp, const uint8_t *key,
    size_t klen, const uint8_t *val, size_t vlen, void *arg),
    void *arg) VAULT_WUR;

#endif
