/*
 * The maintenance lease: which of the replicas on one store runs the
 * background upkeep (rotation resumption, shred epochs, the janitor's
 * passes). One meta record, taken and renewed by compare-and-set inside a
 * writer group, so two replicas never both find it theirs at one time of
 * the store:
 *
 *   meta "lease/maintenance" -> expires ms(8) | holder (1-64 bytes)
 *
 * The holder is the replica's name (replica_name) or, on a node without
 * one, a random id per process. A lease that is not renewed lapses at its
 * expiry, and any replica may take it then; the time is the wall clock's,
 * so replicas on several machines need clocks closer than the lease's
 * length (NTP does much better).
 */
#ifndef VAULT_LEASE_H
#define VAULT_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/vault.h"

#define LEASE_HOLDER_MAX 64

/*
 * Takes the lease for holder, or renews it, until now + ttl_ms; *held says
 * whether holder has it now. When another holds it, its name goes into
 * other (LEASE_HOLDER_MAX + 1 bytes), else other is "".
 */
int lease_take(struct vault *v, const char *holder, uint64_t ttl_ms,
    bool *held, char *other) VAULT_WUR;

/* Gives the lease up when holder has it (a clean stop): no wait for expiry. */
int lease_release(struct vault *v, const char *holder) VAULT_WUR;

#endif
