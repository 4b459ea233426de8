/*
 * Deletion: receipts, idempotent request ids, the deletion ledger.
 *
 * A batch of requests runs in one transaction. Each request removes its
 * consumer (consumer_remove_txn), appends one ledger event per dataset that
 * received the consumer (with the pseudonym that dataset saw), and stores a
 * receipt signed with the vault's Ed25519 key under its request id; the
 * same request id again returns the stored receipt, byte for byte.
 *
 * The signed bytes are this canonical text, each line ending in "\n":
 *
 *   vaultd deletion receipt v1
 *   request_id: <request id>
 *   consumer_ref: <64 hex digits>
 *   found: true|false
 *   deleted_at_ms: <decimal>
 *   epoch: <master key version whose destruction makes it final>
 *   datasets: <dataset ids, sorted, comma-separated; may be empty>
 *   audit_head: <hex of the audit log's head before this deletion>
 *
 * requests: "del:" request id -> fmt(1) | at ms(8) | ref(32) | signature(64) |
 *           signed bytes
 *           "<kind>:" ref hex ":" time -> fmt(1) | at ms(8) | ref(32):
 *           records of know and opt-out requests
 * ledger:   seq(8) -> fmt(1) | deleted ms(8) | dataset(4) | pseudonym(16)
 * meta:     "ledger_next" -> seq(8); "pending/" version (decimal text) -> deletions(8)
 */
#ifndef VAULT_DELETION_H
#define VAULT_DELETION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "engine/tokenize.h"
#include "engine/vault.h"

#define DELETION_REQUEST_ID_MAX 128

struct deletion_request {
	const uint8_t *ref;		/* the consumer's, CRYPTO_REF_BYTES */
	const char *request_id;		/* validated, non-empty */
};

struct receipt {
	char request_id[DELETION_REQUEST_ID_MAX + 1];
	char ref_hex[2 * CRYPTO_REF_BYTES + 1];
	bool found;
	bool repeated;			/* an earlier receipt, returned again */
	uint64_t deleted_at_ms;
	uint32_t epoch;
	char **datasets;
	size_t n_datasets;
	uint8_t *signed_bytes;
	size_t signed_len;
	uint8_t signature[KEYRING_SIG_BYTES];
	char audit_head[2 * 32 + 1];	/* hex; empty while the log is empty */
	/* When the epoch's master key was destroyed (the receipt is final), or 0. */
	uint64_t final_at_ms;
};

/* NULL when id is a valid request id (printable ASCII, no spaces, <= 128). */
const char *deletion_check_request_id(const char *id);

/*
 * Runs n requests in one durable transaction; out[i] is request i's receipt.
 * VAULT_ERR_EXISTS when a request id was used for another consumer (its
 * index goes to *bad); then nothing is written.
 */
int deletion_run(struct vault *v, const struct deletion_request *reqs,
    size_t n, struct receipt *out, size_t *bad) VAULT_WUR;
void receipt_clear(struct receipt *r);

/* Parses canonical receipt text into r (not the signature). */
int receipt_parse(const uint8_t *text, size_t len, struct receipt *r) VAULT_WUR;

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

/* Within txn: deletions whose epoch is version and that are not final yet. */
int deletion_pending(struct store_txn *txn, uint32_t version,
    uint64_t *count) VAULT_WUR;
/* In a write txn: version was destroyed, so its deletions are final. */
int deletion_mark_final_txn(struct store_txn *txn,
    uint32_t version) VAULT_WUR;

#endif
