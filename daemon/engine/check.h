/*
 * vaultd --check: an offline walk of the whole store.
 *
 * The store has no page checksums, so damage shows only where a record fails to
 * parse or authenticate, or is missing from where another record says it
 * must be. The check takes the audit journal's lock first (as the daemon
 * does), so it refuses while a daemon holds the store and no daemon starts
 * while it runs. It then reads, in one snapshot: every consumer (its DEK,
 * seed, manifest, and each attribute record, opened), every attribute
 * record (orphaned ones: of no consumer and not queued for collection),
 * manifests, consents, lineage, the suppression counts (recomputed from
 * the values), the collection queue, the audit chain and its consumer
 * index (not the ledger, request records, or datasets beyond those lineage
 * names; meta only as far as opening the store checks it). It prints one line per kind, counts only (never a ref, id, name
 * or value), and returns 0 when nothing is damaged, 1 when something is,
 * 2 when it could not check (the store is in use, or will not open).
 * It writes nothing but what opening the store writes for a store of an
 * older layout (its named databases).
 */
#ifndef VAULT_CHECK_H
#define VAULT_CHECK_H

#include "conf/config.h"

int check_store(const struct config *cfg);

#endif
