/*
 * Attribute values the schema no longer has.
 *
 * Removing an attribute from the config leaves its values in the store:
 * they are still the consumer's data. GetAttributes and FetchFeatures see
 * only the schema's attributes; ExportConsumer lists these too (marked
 * outside_schema), a rekey re-encrypts them, a deletion removes them. At
 * start the daemon logs how many there are (a count, never a name of a
 * consumer or a value); `vaultd --purge-unknown-attributes` removes them.
 *
 * meta "unknown_attrs" -> fingerprint(16) | values(8): what the last count
 * (or purge) found, under the schema whose attribute names hash to the
 * fingerprint. Puts write only the schema's attributes, so while the
 * schema keeps its fingerprint a count of 0 stays 0: the start skips the
 * count, a pass over every attribute record, unless the schema changed or
 * values were found last time.
 */
#ifndef VAULT_UNKNOWN_ATTRS_H
#define VAULT_UNKNOWN_ATTRS_H

#include <stdint.h>

#include "engine/vault.h"

struct unknown_attrs {
	uint64_t values;		/* attribute records outside the schema */
	uint64_t consumers;		/* refs holding at least one */
};

/*
 * At start: counts them (unless the record above says 0), logs the count
 * when there are any, and records it.
 */
int unknown_attrs_report(struct vault *v) VAULT_WUR;

/*
 * Deletes every attribute record outside the schema, a batch of consumers
 * per transaction, each consumer's with an audit entry naming the
 * attributes (AUDIT_METHOD_PURGE); then the suppression counts of
 * attributes outside the schema. The caller holds the store to itself
 * (the audit journal's lock: no daemon runs on it). *out: what went.
 */
int unknown_attrs_purge(struct vault *v, struct unknown_attrs *out) VAULT_WUR;

#endif
