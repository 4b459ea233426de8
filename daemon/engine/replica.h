/*
 * One replica among several on one store (or a single node: the same code,
 * alone). Every second, in a thread of its own:
 *
 *   - the keyring catches up with key versions other replicas activated or
 *     destroyed (keyring_refresh, in a read transaction), so an idle
 *     replica too forgets a destroyed key within a second; writers catch
 *     up in every group anyway (the writer's prelude);
 *   - the maintenance lease (lease.h) is taken or renewed for REPLICA_LEASE_MS:
 *     only its holder runs the janitor's passes and its hook (rotation
 *     resumption, shred epochs). A holder that dies is replaced once its
 *     lease lapses, within REPLICA_LEASE_MS plus a second.
 *
 * Rotations and destructions started by a call run on whichever replica
 * takes the call; the checks inside their transactions keep them safe.
 */
#ifndef VAULT_REPLICA_H
#define VAULT_REPLICA_H

#include <stdbool.h>

#include "engine/lease.h"
#include "engine/vault.h"

#define REPLICA_TICK_MS 1000
#define REPLICA_LEASE_MS 3000

struct replica;

/*
 * Runs the first round (the lease taken if free) in the caller's thread,
 * then starts the thread. The holder's name is cfg->replica_name, or
 * "node-" and 16 random hex digits.
 */
int replica_start(struct replica **out, struct vault *v) VAULT_WUR;
/* Stops the thread and gives the lease up if held. NULL-safe. */
void replica_stop(struct replica *r);

/*
 * Whether this process holds the maintenance lease (with a second's margin
 * before it would lapse). NULL: a process without replicas (tests, the
 * maintenance commands), which maintains.
 */
bool replica_maintains(const struct replica *r);
/* The holder name this process uses (for logs and metrics). */
const char *replica_id(const struct replica *r);
/* How many times this process took the lease over since start. */
unsigned long long replica_takeovers(const struct replica *r);

#endif
