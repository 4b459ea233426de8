/*
 * Retention: minimization by the schema. An attribute with retain_days
 * keeps a value that long after its last write; then the value has
 * expired. From that moment no read releases it (GetAttributes and
 * FetchFeatures pass over it as if unset; ExportConsumer, the right to
 * know, shows what the vault still holds, with each value's expiry), and
 * the janitor's retention pass crypto-erases it: the consumer's values
 * record is opened and sealed again without it, its suppression count
 * follows, and an audit entry (AUDIT_METHOD_RETENTION) names the
 * attributes, one transaction per batch of consumers. The pass reads only
 * the clear part of each values record (names and times); it opens the
 * records that hold an expired value, and runs at most hourly (and at
 * start), only when some attribute has retain_days.
 *
 * Consumers of the older layouts (formats 1 and 2) are read the same way
 * and moved to one values record when they have a value to erase.
 *
 * Inactivity (consumer_inactive_days, off by default): a consumer none of
 * whose values was written for that long (nor the consumer created) is
 * deleted as DeleteConsumer deletes: its DEK destroyed, a signed receipt
 * kept under request id "inactive-" DAY "-" the first 32 hex digits of its
 * ref (DAY: days since the epoch), the deletion ledger told, and an audit entry
 * (AUDIT_METHOD_INACTIVE, appended before the deletion). Reads and
 * consent changes are not activity: only data written is.
 */
#ifndef VAULT_RETENTION_H
#define VAULT_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/vault.h"

/* When a value expires: schema_expires_ms and schema_expired (schema.h). */

struct retention_done {
	uint64_t values;	/* erased */
	uint64_t consumers;	/* that had one */
};

/* Erases every value expired at now_ms (above); *out: what went. */
int retention_pass(struct vault *v, uint64_t now_ms,
    struct retention_done *out) VAULT_WUR;

/* Deletes every consumer inactive at now_ms (above); *deleted: how many. */
int retention_inactive_pass(struct vault *v, uint64_t now_ms,
    uint64_t *deleted) VAULT_WUR;

#endif
