/*
 * Master key rotation, destruction and shred epochs.
 *
 * Rotation makes a new master version active at once (new DEKs and the
 * vault keys are wrapped under it in the same transaction, which also
 * rewraps the first batch: a store without room for that refuses the start
 * and nothing changes), then rewraps every live DEK in bounded batches,
 * each its own transaction that also advances the rotation record in meta,
 * so a crash resumes where it stopped. Versions only move forward: a new
 * version must be newer than every version the store has had. Attribute ciphertext, seeds, tokens and pseudonyms never change:
 * only the wrapping of each DEK does. Readers never wait on it.
 *
 * A version can be destroyed once it is not active, no rotation runs and no
 * record needs it; its key file is wiped and removed, and the deletions of
 * its epoch are final.
 *
 * meta "rotation" -> target(4) | has cursor(1) | cursor ref(32) |
 *                    rewrapped(8) | total(8)
 */
#ifndef VAULT_ROTATION_H
#define VAULT_ROTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/vault.h"

struct rotation_progress {
	uint32_t target;
	uint64_t rewrapped, total;
	bool done;
};

/* Return non-zero to stop watching (the rotation itself goes on). */
typedef int (*rotation_cb)(const struct rotation_progress *p, void *arg);

/*
 * Starts rotating to version (0: the next one, its key file created), or
 * joins the rotation already running when version is 0 or its target; *p
 * is its progress once started. Atomic: on any error nothing changed (no
 * new version, and a key file created for it is wiped and removed).
 * VAULT_ERR_STATE (the reason in why) when another rotation runs or version
 * is not newer than every version the store has had; VAULT_ERR_KEY when the
 * key file of version cannot be loaded; VAULT_ERR_LIMIT when the store is
 * full.
 */
int rotation_start(struct vault *v, uint32_t version, struct rotation_progress *p,
    char *why, size_t why_len) VAULT_WUR;

/*
 * Drives the rotation to its end, calling cb after every batch; if another
 * thread drives it, reports its progress instead. Returns when done. On an
 * error the rotation stays under way; the janitor resumes it.
 */
int rotation_run(struct vault *v, rotation_cb cb, void *arg) VAULT_WUR;

/* The master keys' state for GetKeyStatus, read in one snapshot. */
struct key_status {
	struct key_version *vs;		/* every recorded version, ascending */
	uint64_t *deks;			/* deks[i]: DEKs that vs[i] wraps */
	uint64_t *pending;		/* pending[i]: deletions not final yet */
	size_t n;
	uint32_t active;		/* the store's, in the same snapshot */
	bool rotating;
	struct rotation_progress p;	/* while rotating */
};

/* Fills s (clear it with key_status_clear, also after an error). */
int rotation_key_status(struct vault *v, struct key_status *s) VAULT_WUR;
/*
 * The same within txn. Counting DEKs reads every consumer record; without
 * count_deks, s->deks stays all 0 and the call reads a few meta keys.
 */
int rotation_key_status_txn(struct vault *v, struct store_txn *txn,
    bool count_deks, struct key_status *s) VAULT_WUR;
void key_status_clear(struct key_status *s);

/*
 * Destroys version. VAULT_ERR_STATE (with a reason in why) when it is
 * active, a rotation runs, or records still need it.
 */
int rotation_destroy(struct vault *v, uint32_t version, uint64_t *destroyed_ms,
    char *why, size_t why_len) VAULT_WUR;

/* Re-encrypts the consumer at ref under a new DEK; its new generation in *gen. */
int rotation_consumer_key(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    uint32_t *gen) VAULT_WUR;

/* The janitor's hook: resumes an interrupted rotation, runs shred epochs. */
void rotation_tick(struct vault *v, void *arg);

#endif
