/*
 * Deletion: a batch of requests in one transaction, with their receipts
 * (receipt.h), ledger events (ledger.h) and request records.
 *
 * A batch of requests runs in one transaction. Each request removes its
 * consumer (consumer_remove_txn), appends one ledger event per dataset that
 * received the consumer (with the pseudonym that dataset saw), and stores a
 * receipt signed with the vault's Ed25519 key under its request id; the
 * same request id again returns the stored receipt, byte for byte.
 *
 * The receipt record and the ledger's layout: receipt.h, ledger.h.
 * meta: "pending/" version (decimal text) -> deletions not final yet (8)
 */
#ifndef VAULT_DELETION_H
#define VAULT_DELETION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "engine/ledger.h"
#include "engine/receipt.h"
#include "engine/tokenize.h"
#include "engine/vault.h"

#define DELETION_REQUEST_ID_MAX RECEIPT_REQUEST_ID_MAX

struct deletion_request {
	const uint8_t *ref;		/* the consumer's, CRYPTO_REF_BYTES */
	const char *request_id;		/* validated, non-empty */
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

/* Within txn: deletions whose epoch is version and that are not final yet. */
int deletion_pending(struct store_txn *txn, uint32_t version,
    uint64_t *count) VAULT_WUR;
/* In a write txn: version was destroyed, so its deletions are final. */
int deletion_mark_final_txn(struct store_txn *txn,
    uint32_t version) VAULT_WUR;

#endif
