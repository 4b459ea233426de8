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

/*
 * The presence of a named replica: meta "replica/<name>" -> expires ms(8) |
 * nonce(16), the nonce random per process. A replica claims its name at
 * start and renews the claim with the lease; a second running process with
 * the same replica_name finds the claim another's and not lapsed, and is
 * refused (two of one name would share one journal position and both hold
 * the lease). *ours says whether the claim is this process's now.
 */
#define PRESENCE_NONCE_BYTES 16

int presence_claim(struct vault *v, const char *name,
    const uint8_t nonce[PRESENCE_NONCE_BYTES], uint64_t ttl_ms, bool *ours)
    VAULT_WUR;

/* Gives the claim up when it is this process's (a clean stop). */
int presence_release(struct vault *v, const char *name,
    const uint8_t nonce[PRESENCE_NONCE_BYTES]) VAULT_WUR;

#endif
