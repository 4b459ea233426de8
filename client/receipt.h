/*
 * A deletion receipt as `vaultctl --json delete` prints it, checked the way
 * an auditor would: the Ed25519 signature over signed_bytes, then every
 * field of the JSON object against those bytes.
 *
 * signed_bytes is the canonical text of docs/operations.md, parsed strictly
 * (the header, then exactly request_id, consumer_ref, found, deleted_at_ms,
 * epoch, datasets and audit_head, in that order, each "name: value\n", and
 * nothing after). Each of these must be in the JSON with the right type and
 * the same value (datasets as the array affected_datasets, in the signed
 * order). final_at_ms is not signed: it is set when the epoch's key is
 * destroyed, after signing; it is only checked to be a non-negative integer.
 * Any other field makes the receipt invalid, so nothing unverified passes
 * for part of it.
 */
#ifndef VAULTCTL_RECEIPT_H
#define VAULTCTL_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * Returns 0 when o is a valid receipt under pk (an Ed25519 public key), or
 * -1 with a reason in why (a fixed text, never a value from o).
 */
int receipt_verify(const json_t *o, const uint8_t pk[32], char *why,
    size_t whylen) __attribute__((warn_unused_result));

#endif
