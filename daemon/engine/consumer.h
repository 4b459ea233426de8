/*
 * Consumers and their attributes: put, get and delete, all encrypted under
 * the consumer's own data key (DEK), which the master key wraps. Record
 * layouts are in record.h. Puts and deletes keep the counts of categorical
 * values exact, for rare-value suppression.
 */
#ifndef VAULT_CONSUMER_H
#define VAULT_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "engine/lineage.h"
#include "engine/record.h"
#include "conf/schema.h"
#include "engine/vault.h"

/* One validated attribute to write: schema index and value bytes. */
struct attr_in {
	int attr;
	const char *value;
	size_t len;
};

/*
 * Writes attrs for the consumer at ref, creating it on its first put. All
 * or nothing; durable when it returns 0. The caller has validated attrs
 * against the schema.
 */
int consumer_put(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    const struct attr_in *attrs, size_t n, bool *created) VAULT_WUR;

/*
 * At most this many values in a result: the schema's attributes, and for
 * the right to know, records of attributes the schema no longer has.
 */
#define CONSUMER_VALUES_MAX (2 * SCHEMA_MAX_ATTRS)

struct attr_out {
	int attr;		/* schema index; -1: not in the schema (export) */
	const char *name;	/* the schema's, or in the result's buffer */
	const char *value;	/* in the result's locked buffer */
	size_t len;
	uint64_t updated_ms;
};

struct consumer_values {
	uint8_t ref[CRYPTO_REF_BYTES];
	size_t n;
	struct attr_out v[CONSUMER_VALUES_MAX];
	size_t n_withheld;	/* sensitive attributes held back */
	int withheld[SCHEMA_MAX_ATTRS];
	uint8_t *buf;		/* this thread's locked scratch: valid until the
				   thread's next call, wiped by consumer_values_clear */
	size_t buf_len;
};

/*
 * Reads and decrypts, for purpose, the attributes at schema indexes attrs
 * (all the consumer has when n_attrs is 0). Attributes never set are left
 * out; sensitive ones are withheld when the consumer limited their use and
 * the purpose is not essential. Consent is read in the same transaction as
 * the data: VAULT_ERR_CONSENT when it excludes the purpose,
 * VAULT_ERR_NOT_FOUND when the consumer does not exist. purpose -1 with
 * n_attrs 0 reads everything the vault holds of the consumer, for its own
 * right to know (export): also the records of attributes no longer in the
 * schema (attr -1), in name order; VAULT_ERR_LIMIT past CONSUMER_VALUES_MAX.
 */
int consumer_get(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES], int purpose,
    const int *attrs, size_t n_attrs, struct consumer_values *out) VAULT_WUR;
void consumer_values_clear(struct consumer_values *cv);

/* What removing a consumer did; removal_clear frees it. */
struct removal {
	bool found;
	uint32_t epoch;			/* master version that wrapped the DEK */
	size_t n_datasets;
	uint32_t *datasets;		/* that received the consumer */
	uint8_t (*pseudonyms)[TOKEN_PSEUDONYM_BYTES];	/* each one saw */
};

/*
 * In a write txn: makes sure a consumer exists at ref, creating one with
 * no attributes (a DEK, a seed, an empty values record) if there is none, so
 * consent can be recorded before any data (consent.h). *created says
 * which. Creating is an ordinary write: VAULT_ERR_LIMIT in the headroom.
 */
int consumer_ensure_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, bool *created) VAULT_WUR;

/*
 * SetConsent: applies change (consent.h) to the consumer at ref; durable on
 * return. *flags is the consumer's flags afterwards. A consumer not yet in
 * the vault is created with no attributes (*created, consumer_ensure_txn)
 * in the same write, so an opt-out or GPC received before the consumer's
 * data holds when the data comes.
 */
struct consent_change;

int consumer_set_consent(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    const struct consent_change *change, uint8_t *flags,
    bool *created) VAULT_WUR;

/*
 * In a write txn: removes the consumer at ref: its wrapped DEK and seed,
 * consents, lineage and its values from the counts, and queues its
 * attribute records for collection. Unreadable at once: the DEK is gone.
 * Its lineage rows go to doomed, for lineage_forget in the same txn, while
 * doomed holds at most LINEAGE_FORGET_INLINE rows; past that, its
 * collection entry says lineage is left, for the collector.
 */
int consumer_remove_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, struct lineage_doomed *doomed,
    struct removal *out) VAULT_WUR;
void removal_clear(struct removal *r);

/*
 * In a write txn: deletes the attribute records and the lineage rows left
 * (found again from the ref) of up to max queued refs, stopping early past
 * LINEAGE_FORGET_INLINE rows. *more: some are left for another write.
 */
int consumer_collect_txn(struct vault *v, struct store_txn *txn, size_t max,
    size_t *collected, bool *more) VAULT_WUR;

/*
 * A consumer's values (record.h) are one values record under one AEAD
 * that also covers its names and times, so a value lost or added is
 * VAULT_ERR_CRYPTO, never a shorter or longer answer. Consumers written
 * before it (formats 1 and 2) keep a record per attribute and, from format
 * 2, a manifest that every read compares the records with; their next put
 * or key rotation moves them to one values record.
 */

/*
 * In txn: the names, times and lengths of the values of the consumer at
 * ref (rec read in txn), whatever its format, in name order, and in
 * l->need the bytes they take opened; pointers into the store, for the
 * next few reads (store.h). VAULT_ERR_CRYPTO when a record is missing,
 * unexpected or malformed.
 */
int consumer_values_load(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec,
    struct value_list *l) VAULT_WUR;
/* Opens the values l lists under dek into plain (cap >= l->need, locked). */
int consumer_values_open(const uint8_t *ref, const struct consumer_rec *rec,
    const uint8_t *dek, struct value_list *l, uint8_t *plain,
    size_t cap) VAULT_WUR;

/* Values taken out of the store for a write: consumer_values_release frees. */
struct values_taken {
	uint8_t *plain;		/* this thread's CRYPTO_SCRATCH_VALUES region */
	size_t plain_len;
	uint8_t *names;
};

/*
 * In a write txn: loads and opens the consumer's values into memory of
 * their own (t), which the txn's writes do not move: the thread's
 * CRYPTO_SCRATCH_VALUES region, so one taken at a time per thread.
 */
int consumer_values_take(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec, const uint8_t *dek,
    struct value_list *l, struct values_taken *t) VAULT_WUR;
void consumer_values_release(struct values_taken *t);
/*
 * In a write txn: seals l under dek of generation as the values record of
 * the consumer at ref; for one of an older format (one_record false),
 * removes its attrs records and manifest too (its consumer record is the
 * caller's to move to format 4).
 */
int consumer_values_put_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, bool one_record, const uint8_t *dek,
    uint32_t generation, const struct value_list *l) VAULT_WUR;

/*
 * In txn: the manifest of the consumer at ref (rec read in txn); m->p NULL
 * for a consumer written before manifests. VAULT_ERR_CRYPTO when it is
 * missing, unexpected or fails its check.
 */
int consumer_manifest_get(struct vault *v, struct store_txn *txn,
    const uint8_t *ref,
    const struct consumer_rec *rec, struct manifest *m) VAULT_WUR;
/*
 * 0 when m agrees with the attribute record of name: val found, or NULL
 * when there is none; VAULT_ERR_CRYPTO otherwise.
 */
int consumer_manifest_agrees(const struct manifest *m, const char *name,
    size_t len, const struct store_val *val) VAULT_WUR;
/* In a write txn: drops names the schema lacks from ref's manifest. */
int consumer_manifest_prune_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref) VAULT_WUR;

struct dataset_info;

/*
 * A consumer's records for its export, in one snapshot: *created_ms, each
 * consent record through consent (as consent_list gives them), then each
 * dataset the consumer was released in through dataset, until it returns
 * nonzero (positive: enough, not an error). VAULT_ERR_NOT_FOUND when no
 * consumer is at ref.
 */
int consumer_export_records(struct vault *v, const uint8_t *ref,
    int (*consent)(const char *name, size_t len, uint8_t state,
    uint64_t at_ms, const char *source, size_t source_len, void *arg),
    int (*dataset)(const struct dataset_info *ds, void *arg), void *arg,
    uint64_t *created_ms) VAULT_WUR;

/*
 * In a write txn: erases the values of the consumer at ref that have
 * expired at now_ms (retention.h): its values record sealed again without
 * them under a new DEK (the next generation, as RotateConsumerKey; a
 * consumer of an older layout moved to one record and format 4), their
 * suppression counts lowered. Their names, comma-separated, go to names
 * (cap bytes); *removed says how many. A consumer deleted meanwhile is
 * passed over.
 */
int consumer_expire_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, uint64_t now_ms, char *names, size_t cap,
    uint64_t *removed) VAULT_WUR;

#endif
