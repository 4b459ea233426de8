/*
 * Processing a DROP list (drop.h) against the index: the status a data
 * broker reports per request, in the specification's codes.
 *
 * Per item: removed (cancelled) before it came: CANCELLED, nothing done;
 * no consumer indexed under the hash: NOT_FOUND; one: DELETED, as
 * DeleteConsumer deletes, request id "drop-" ID (so a run again gives the
 * same receipt back: its consumer, gone from the index, is found through
 * the receipt), unless the consumer is under a legal hold (SetConsent
 * legal_hold): EXEMPTED; several (a shared identifier): each opted out of
 * sale and sharing (source "drop"), OPTED_OUT.
 *
 * Cancellations and the suppression list: drop.h.
 */
#ifndef VAULT_DROPPROC_H
#define VAULT_DROPPROC_H

#include "engine/drop.h"
#include "engine/receipt.h"
#include "engine/vault.h"

#define DROP_ID_MAX 64

enum drop_status {
	DROP_ST_EXEMPTED = 2,
	DROP_ST_DELETED = 3,
	DROP_ST_OPTED_OUT = 4,
	DROP_ST_NOT_FOUND = 5,
	DROP_ST_CANCELLED = 6,
};

struct drop_item {
	const char *id;			/* drop_check_id */
	enum drop_list list;
	uint8_t hash[DROP_HASH_BYTES];
};

struct drop_outcome {
	enum drop_status status;
	struct receipt receipt;		/* DROP_ST_DELETED */
	uint8_t ref[CRYPTO_REF_BYTES];	/* the consumer (DELETED, EXEMPTED) */
};

/* NULL when id is a work item ID ([A-Za-z0-9]{1,64}); else why. */
const char *drop_check_id(const char *id);

/* Records the items as cancelled (a Removed file): nothing else is done. */
int drop_cancel(struct vault *v, const struct drop_item *items,
    size_t n) VAULT_WUR;

/*
 * Processes items[0..n) (at most max_delete_batch) into out[i]; principal
 * names the caller in the consent history of the consumers opted out.
 * VAULT_ERR_EXISTS when a request id "drop-" ID was used for another
 * consumer (*bad: the item); then nothing was deleted.
 */
int drop_process(struct vault *v, const struct drop_item *items, size_t n,
    const char *principal, struct drop_outcome *out, size_t *bad) VAULT_WUR;
void drop_outcomes_clear(struct drop_outcome *out, size_t n);

#endif
