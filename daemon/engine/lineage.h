/*
 * Lineage: the datasets that may have received a consumer.
 *
 *   lineage_rows: dataset(4) | stream position(8) | lineage tag(8)
 *                 -> "" (empty)
 *
 * Keyed by dataset, then by the consumer's position in the stream of the
 * dataset's purpose (tokenize.h), a stream records its rows in the order
 * it sends them: a write of a thousand rows fills a few adjacent B-tree
 * pages at the end of the space, whatever the vault's size. (Keyed by
 * consumer, as before, each row touched a page of its own: the single
 * writer bounded every stream, and one large lineage write dirtied a
 * page per row; docs/performance.md.)
 *
 * A consumer's datasets are found from its ref: for each dataset the vault
 * has issued, its position for the dataset's purpose (configured or not)
 * and its tag give the key, one B-tree look-up per dataset. So a deletion
 * and an export cost one look-up per dataset on record.
 *
 * Position and tag are keyed hashes of the ref (tokenize.h): without the
 * vault's keys a row names no consumer, and the tag, keyed per dataset,
 * tells two consumers at one position apart without joining datasets.
 * The rows of a dataset sort in the order the stream sent them, so the
 * store file pairs each released row with a key, and nothing more: the
 * position is per purpose (as the pseudonym is), so datasets of two
 * purposes share nothing.
 *
 * Stores written before this layout hold lineage as ref -> dataset numbers
 * (STORE_LINEAGE, dup). It is still read, and removed with its consumer,
 * never written: the two together are the consumer's lineage.
 */
#ifndef VAULT_LINEAGE_H
#define VAULT_LINEAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "engine/dataset.h"
#include "engine/vault.h"

#define LINEAGE_KEY_BYTES (4 + 8 + 8)

/* The lineage_rows key of the consumer at ref, at order, in dataset. */
void lineage_key(struct vault *v, uint8_t out[LINEAGE_KEY_BYTES],
    uint32_t dataset, uint64_t order, const uint8_t ref[CRYPTO_REF_BYTES]);

/*
 * The most lineage rows one deletion request removes in its own write. A
 * deleted consumer's lineage goes with it, up to this many in a request;
 * the rows of its consumers past that are left to the collector (their
 * collection entry says so, consumer.h), which finds them again from the
 * ref and removes them in writes of about this many. A consumer's rows are
 * never split: one on record in more datasets than this takes a write of
 * its own. Why: a write holds every page it changes in memory until it
 * commits (LMDB, which keeps that memory for later writes), and a
 * consumer's lineage rows lie on a page per dataset. At a million
 * consumers, 1,000 deletions over 14 datasets in one write took the daemon
 * to 94-118 MiB; with this bound at 4,096, 1,024 and 256 rows, 57-65, 48
 * and 40-44 MiB (docs/performance.md, "Memory").
 */
#define LINEAGE_FORGET_INLINE 1024

/* Lineage rows to remove, gathered over a batch of deletions. */
struct lineage_doomed {
	uint8_t (*keys)[LINEAGE_KEY_BYTES];
	size_t n, cap;
};

/*
 * Within txn: fn for each dataset that may have received the consumer at
 * ref, once each, by dataset number (a nonzero return of fn stops the walk
 * and is returned). doomed (a write txn; NULL: keep the lineage): removes
 * the consumer's lineage of the old layout, and adds its rows to doomed
 * for lineage_forget.
 */
int lineage_each(struct vault *v, struct store_txn *txn,
    const uint8_t ref[CRYPTO_REF_BYTES], struct lineage_doomed *doomed,
    int (*fn)(const struct dataset_info *ds, void *arg), void *arg) VAULT_WUR;

/*
 * Within the write txn of the lineage_each calls: removes the rows in
 * doomed, in key order (a batch of deletions then touches each B-tree page
 * of a dataset once, not once per consumer), and empties it.
 */
int lineage_forget(struct store_txn *txn,
    struct lineage_doomed *doomed) VAULT_WUR;

void lineage_doomed_free(struct lineage_doomed *doomed);

/* Within txn: the lineage rows of dataset (consumers it may have received). */
int lineage_count(struct store_txn *txn, uint32_t dataset,
    uint64_t *n) VAULT_WUR;

#endif
