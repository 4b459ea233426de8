/*
 * A deletion receipt: what the vault signs (Ed25519, the vault's signing
 * key) when it deletes a consumer, and keeps under the request id.
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
 *
 * requests: "del:" request id -> fmt(1) | at ms(8) | ref(32) |
 *           signature(64) | signed bytes
 *   (the head of every request record, requests.h, then the receipt)
 */
#ifndef VAULT_RECEIPT_H
#define VAULT_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "engine/requests.h"
#include "store/store.h"

#define RECEIPT_REQUEST_ID_MAX 128
#define RECEIPT_KEY_PREFIX "del:"
#define RECEIPT_REC_SIG REQUEST_REC_BYTES	/* the signature's offset */
#define RECEIPT_REC_HDR (RECEIPT_REC_SIG + KEYRING_SIG_BYTES)	/* the text's */

struct receipt {
	char request_id[RECEIPT_REQUEST_ID_MAX + 1];
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

void receipt_clear(struct receipt *r);

/* The canonical text of r (above) into r->signed_bytes (malloc'd). */
int receipt_render(struct receipt *r) VAULT_WUR;

/* Parses canonical receipt text into r (not the signature). */
int receipt_parse(const uint8_t *text, size_t len, struct receipt *r) VAULT_WUR;

/*
 * Within txn: the receipt stored under request_id into out (*found), marked
 * repeated. VAULT_ERR_EXISTS when the request id was used for another
 * consumer than ref; VAULT_ERR_STATE for a damaged record.
 */
int receipt_find_txn(struct store_txn *txn, const char *request_id,
    const uint8_t *ref, struct receipt *out, bool *found) VAULT_WUR;

/* In a write txn: stores r, signed, under its request id. */
int receipt_put_txn(struct store_txn *txn, const uint8_t *ref,
    const struct receipt *r) VAULT_WUR;

#endif
