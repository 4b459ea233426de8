/*
 * The deletion log (dellog.c): every consumer deletion, in order, for
 * restores. A backup records the log's next sequence number; a restore
 * re-applies every deletion at or after it, from an export of this log
 * (Admin.ExportDeletions) kept apart from the store, so a restored backup
 * never brings a deleted consumer back.
 *
 * deletions: seq(8) -> fmt(1) | deleted ms(8) | consumer ref(32)
 * meta:      "deletion_next" -> the next seq(8) (1 when absent);
 *            "deletion_expired" -> the last seq dropped by retention(8)
 *
 * It holds refs (keyed hashes of consumer ids under the vault's index
 * key), never an id: without the vault's keys a ref links to no one.
 * Only deletions that found their consumer are logged. Entries are kept
 * as long as the deletion receipts (request_retention_s), then dropped: a
 * restore of a backup older than that is refused (its deletions are gone).
 */
#ifndef VAULT_DELLOG_H
#define VAULT_DELLOG_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "engine/vault.h"

#define DELLOG_REC_FORMAT 1
#define DELLOG_AT 1			/* offsets of a record's fields */
#define DELLOG_REF 9
#define DELLOG_REC_BYTES (DELLOG_REF + CRYPTO_REF_BYTES)

struct dellog_entry {
	uint64_t seq;
	uint64_t deleted_at_ms;
	uint8_t ref[CRYPTO_REF_BYTES];
};

/*
 * The store's incarnation: all zero until a restore gives the restored
 * store a random one. A restored store's deletion log goes on from the
 * backup's, so its numbers mean other deletions than the lost store's (or
 * a clone's) after that point: a backup and a deletion export must be of
 * the same incarnation (docs/backup.md).
 */
#define DELLOG_INCARNATION_BYTES 16
int dellog_incarnation(struct vault *v,
    uint8_t out[DELLOG_INCARNATION_BYTES]) VAULT_WUR;
int dellog_incarnation_txn(struct store_txn *txn,
    uint8_t out[DELLOG_INCARNATION_BYTES]) VAULT_WUR;
/* A new random incarnation, durably. */
int dellog_new_incarnation(struct vault *v) VAULT_WUR;

/* Within txn: the sequence number the next deletion takes (>= 1). */
int dellog_next(struct store_txn *txn, uint64_t *seq) VAULT_WUR;

/* In a write txn: logs the deletion of ref at at_ms, under the next seq. */
int dellog_append_txn(struct store_txn *txn, const uint8_t *ref,
    uint64_t at_ms) VAULT_WUR;

/*
 * Reads up to cap entries after after_seq, in order, into out (*n).
 * *expired_through: the last seq retention dropped (0: none).
 */
int dellog_read(struct vault *v, uint64_t after_seq, struct dellog_entry *out,
    size_t cap, size_t *n, uint64_t *expired_through) VAULT_WUR;

/* In a write txn: drops entries older than before_ms, at most max. */
int dellog_expire_txn(struct store_txn *txn, uint64_t before_ms, size_t max,
    size_t *expired) VAULT_WUR;

#endif
