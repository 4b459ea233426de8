/*
 * The ledgers of events datasets' holders follow (ledger.c): one event per
 * dataset that received a consumer, with the pseudonym it saw.
 *
 * LEDGER_DELETION, the deletion ledger (WatchDeletions): the consumer was
 * deleted.
 *   ledger: seq(8) -> fmt(1) | deleted ms(8) | dataset(4) | pseudonym(16)
 *   meta:   "ledger_next" -> the next seq(8); "ledger_expired" -> the last
 *           seq dropped by retention(8)
 * LEDGER_CONSENT, the consent ledger (WatchConsent): the consumer may no
 * longer be used for the dataset's purpose (an opt-out, a consent
 * withdrawn, Global Privacy Control for a sale or share purpose).
 *   consent_ledger: seq(8) -> fmt(1) | revoked ms(8) | dataset(4) |
 *           pseudonym(16)
 *   meta:   "consent_ledger_next", "consent_ledger_expired", as above
 *
 * Both are dropped after ledger_retention_s (janitor.c).
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

enum ledger_kind { LEDGER_DELETION, LEDGER_CONSENT };

/* Within txn: the sequence number the next event takes. */
int ledger_next(struct store_txn *txn, enum ledger_kind kind,
    uint64_t *seq) VAULT_WUR;
/* In a write txn: records seq as the next event's. */
int ledger_set_next(struct store_txn *txn, enum ledger_kind kind,
    uint64_t seq) VAULT_WUR;

/* In a write txn: appends event seq: dataset received, then lost, pseudonym. */
int ledger_append_txn(struct store_txn *txn, enum ledger_kind kind,
    uint64_t seq, uint64_t at_ms, uint32_t dataset,
    const uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES]) VAULT_WUR;

struct ledger_event {
	uint64_t seq;
	uint64_t at_ms;			/* deleted, or revoked */
	uint32_t dataset;
	uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES];
};

/*
 * Reads up to cap events after after_seq into out (*n). *expired_through is
 * the last sequence dropped by retention (0: none): a reader resuming from
 * before it has missed events.
 */
int ledger_read(struct vault *v, enum ledger_kind kind, uint64_t after_seq,
    struct ledger_event *out, size_t cap, size_t *n,
    uint64_t *expired_through) VAULT_WUR;

/* In a write txn: drops events older than before_ms, at most max. */
int ledger_expire_txn(struct store_txn *txn, enum ledger_kind kind,
    uint64_t before_ms, size_t max, size_t *expired) VAULT_WUR;

#endif
