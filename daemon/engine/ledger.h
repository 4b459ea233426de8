/*
 * The deletion ledger (ledger.c).
 *
 * ledger: seq(8) -> fmt(1) | deleted ms(8) | dataset(4) | pseudonym(16)
 * meta:   "ledger_next" -> the next seq(8); "ledger_expired" -> the last seq
 *         dropped by retention(8)
 */
#ifndef VAULT_LEDGER_H
#define VAULT_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tokenize.h"
#include "engine/vault.h"

#define LEDGER_REC_FORMAT 1
#define LEDGER_AT 1			/* offsets of an event's fields */
#define LEDGER_DATASET 9
#define LEDGER_PSEUDONYM 13
#define LEDGER_REC_BYTES (LEDGER_PSEUDONYM + TOKEN_PSEUDONYM_BYTES)

/* Within txn: the sequence number the next event takes. */
int ledger_next(struct store_txn *txn, uint64_t *seq) VAULT_WUR;
/* In a write txn: records seq as the next event's. */
int ledger_set_next(struct store_txn *txn, uint64_t seq) VAULT_WUR;

/* In a write txn: appends event seq: dataset received, then lost, pseudonym. */
int ledger_append_txn(struct store_txn *txn, uint64_t seq, uint64_t at_ms,
    uint32_t dataset, const uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES]) VAULT_WUR;

struct ledger_event {
	uint64_t seq;
	uint64_t deleted_at_ms;
	uint32_t dataset;
	uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES];
};

/*
 * Reads up to cap events after after_seq into out (*n). *expired_through is
 * the last sequence dropped by retention (0: none): a reader resuming from
 * before it has missed events.
 */
int ledger_read(struct vault *v, uint64_t after_seq, struct ledger_event *out,
    size_t cap, size_t *n, uint64_t *expired_through) VAULT_WUR;

/* In a write txn: drops events older than before_ms, at most max. */
int ledger_expire_txn(struct vault *v, struct store_txn *txn,
    uint64_t before_ms, size_t max, size_t *expired) VAULT_WUR;

#endif
