/*
 * Request records (requests.c): the log of CCPA requests to know and to
 * opt out, and the sweep that drops every request record (deletion
 * receipts too) once its retention ends.
 *
 * A record, keyed in the requests space:
 *   "<kind>:" ref hex ":" seconds(20 digits) nanoseconds(9 digits)
 *       (before 2026-12 cut to 95 bytes, which for "optout" kept 3 digits
 *       of the nanoseconds; never overwritten: a key taken moves on a
 *       nanosecond)
 *   -> fmt(1) | at ms(8) | ref(32) [| what the kind adds]
 * Deletion receipts ("del:" request id) start with the same three fields.
 */
#ifndef VAULT_REQUESTS_H
#define VAULT_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vault.h"

#define REQUEST_REC_FORMAT 1
#define REQUEST_KEY_MAX 127
#define REQUEST_AT 1		/* offset of the at ms field */
#define REQUEST_REF 9		/* offset of the consumer ref */
#define REQUEST_REC_BYTES (REQUEST_REF + CRYPTO_REF_BYTES)
/* The least a record the sweep reads must hold: its format and time. */
#define REQUEST_REC_MIN (REQUEST_AT + 8)

/* In a write txn: records a request of kind ("know", "optout") about ref. */
int requests_log_txn(struct store_txn *txn, const char *kind,
    const uint8_t *ref) VAULT_WUR;
/* The most bytes a record may carry after the ref. */
#define REQUEST_MORE_MAX 256
/* The same with more_len bytes after the ref (consent.h's history). */
int requests_log_more_txn(struct store_txn *txn, const char *kind,
    const uint8_t *ref, const void *more, size_t more_len) VAULT_WUR;
/* The same in a durable write of its own. */
int requests_log(struct vault *v, const char *kind,
    const uint8_t *ref) VAULT_WUR;
/* Within txn: the records of kind made in [since_ms, until_ms). */
int requests_count_txn(struct store_txn *txn, const char *kind,
    uint64_t since_ms, uint64_t until_ms, uint64_t *n) VAULT_WUR;
/*
 * Drops the request records older than before_ms, looking at per_txn of
 * them per durable transaction. The records are keyed by kind and ref, not
 * by time, so the sweep walks them all. *txns: how many transactions.
 */
int requests_expire(struct vault *v, uint64_t before_ms, size_t per_txn,
    size_t *expired, size_t *txns) VAULT_WUR;

#endif
