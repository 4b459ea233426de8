/*
 * California's Delete Act (Civ. Code §1798.99.80 ff.) and its DROP lists:
 * the identifiers of consumers who asked every data broker to delete them,
 * standardized, SHA-256 hashed and Base64 encoded as CalPrivacy's DROP
 * technical specification says (docs/research/drop.md, and the cites in
 * docs/compliance.md). A list is one identifier (Email, Phone, MAID,
 * CTVID) or a composite: each field standardized and hashed, the Base64
 * hashes concatenated in the list's order, and that hashed again (NDZ:
 * first name, last name, date of birth, ZIP; NameVIN: first name, last
 * name, VIN).
 *
 * The rules are data: a table of fields (drop.c, `fields`) and one of
 * lists (`drop_lists`); a change to the specification is an edit there.
 *
 * The store never holds a DROP hash as it is (anyone could hash a known
 * email and look for it): it holds a keyed BLAKE2b-256 of it under the
 * vault's index key (drop_keyed), like a consumer ref.
 */
#ifndef VAULT_DROP_H
#define VAULT_DROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/schema.h"	/* enum drop_field */
#include "util/vault_err.h"

#define DROP_HASH_BYTES 32		/* SHA-256 */
#define DROP_B64_BYTES 45		/* its standard padded Base64, and a NUL */
#define DROP_KEYED_BYTES 32
#define DROP_STD_MAX 256		/* a standardized field's longest form */

/* The DROP lists (their ListType names in drop_lists). */
enum drop_list {
	DROP_LIST_EMAIL,
	DROP_LIST_PHONE,
	DROP_LIST_MAID,
	DROP_LIST_CTVID,
	DROP_LIST_NDZ,
	DROP_LIST_NAMEVIN,
	DROP_LISTS
};

struct drop_list_def {
	const char *name;		/* the specification's ListType */
	enum drop_field fields[4];	/* hashed in this order */
	size_t n;
};

extern const struct drop_list_def drop_lists[DROP_LISTS];

/* The list named name ("Email", "NDZ", ...; any case), or -1. */
int drop_list_parse(const char *name);

/*
 * Standardizes value (len bytes) as field f into out (DROP_STD_MAX bytes,
 * NUL-terminated): *out_len, and true; false when the value has no
 * standard form (a MAID not of 32 hex digits, a name with a letter the
 * table does not fold, ...), which is then not indexed.
 */
bool drop_standardize(enum drop_field f, const char *value, size_t len,
    char *out, size_t *out_len);

/*
 * The DROP hash of list l from values[f] (lens[f] bytes; NULL when the
 * consumer has no value of field f): true when every field of l is there
 * and standardizes.
 */
bool drop_hash(enum drop_list l, const char *const values[DROP_FIELDS],
    const size_t lens[DROP_FIELDS], uint8_t hash[DROP_HASH_BYTES]);

/* The hash's Base64, as the lists carry it. */
void drop_b64(const uint8_t hash[DROP_HASH_BYTES], char out[DROP_B64_BYTES]);
/* A list's Base64 back to the hash; false unless 32 bytes, standard padded. */
bool drop_unb64(const char *b64, size_t len, uint8_t hash[DROP_HASH_BYTES]);

/* The form the store holds: keyed BLAKE2b-256 over the list and the hash. */
void drop_keyed(const uint8_t *index_key, enum drop_list l,
    const uint8_t hash[DROP_HASH_BYTES], uint8_t out[DROP_KEYED_BYTES]);

/*
 * The index (space drop): 'I' | list(1) | keyed(32) | ref(32) -> "", one
 * entry per list a consumer's values give a hash for; several consumers
 * may share one (a shared identifier). Kept by every write of the values
 * (a put, the retention pass, a deletion: drop_index_update_txn), and
 * built for the consumers already there by the janitor (dropindex.h),
 * whose state is meta "drop_index": fingerprint(16) | built(1) | ref(32),
 * the fingerprint being of the schema's drop identifiers and of the
 * standardization's version: when it changes, the index is built again.
 */
#define DROP_INDEX_KEY_BYTES (2 + DROP_KEYED_BYTES + 32)
#define DROP_INDEX_KIND 'I'		/* the index's entries' first byte */
/*
 * The same space holds two kinds of marks, key kind | list(1) | keyed(32)
 * -> at ms(8):
 *   'C': a cancellation (an identifier of a Removed file): a list's item
 *        with it is not acted on (dropproc.h);
 *   'S': an identifier deleted through DROP (the suppression list): a
 *        later write of it opts the consumer out of sale and sharing until
 *        a fresh consent (the put, consumer.c), for drop_suppression_days.
 */
#define DROP_CANCEL_KIND 'C'
#define DROP_SUPPRESS_KIND 'S'
#define DROP_MARK_KEY_BYTES (2 + DROP_KEYED_BYTES)

struct vault;
struct value_list;
struct store_txn;

/* A consumer's keyed forms, by list (present[l]). */
struct drop_forms {
	bool present[DROP_LISTS];
	uint8_t keyed[DROP_LISTS][DROP_KEYED_BYTES];
};

/* Whether the schema has a drop identifier: else nothing here runs. */
bool drop_enabled(const struct vault *v);
/* The forms of l's opened values (the schema's drop identifiers). */
void drop_forms_of(const struct vault *v, const struct value_list *l,
    struct drop_forms *out);
/* In a write txn: the index entries of ref, from old to new (NULL: none). */
int drop_index_update_txn(struct store_txn *txn, const uint8_t *ref,
    const struct drop_forms *old, const struct drop_forms *new) VAULT_WUR;
/* In a write txn: marks list l's keyed form with kind, at at_ms. */
int drop_mark_txn(struct store_txn *txn, char kind, enum drop_list l,
    const uint8_t keyed[DROP_KEYED_BYTES], uint64_t at_ms) VAULT_WUR;
/* Within txn: the time of kind's mark of list l's keyed form (0: none). */
int drop_mark_get(struct store_txn *txn, char kind, enum drop_list l,
    const uint8_t keyed[DROP_KEYED_BYTES], uint64_t *at_ms) VAULT_WUR;
/*
 * In a write txn: whether new (a consumer's identifiers as just written)
 * holds one that old did not and that is on the suppression list, marked
 * within drop_suppression_days of now_ms.
 */
int drop_suppressed_txn(struct vault *v, struct store_txn *txn,
    const struct drop_forms *old, const struct drop_forms *new,
    uint64_t now_ms, bool *hit) VAULT_WUR;

/*
 * Within txn: the consumers indexed under list l's hash, up to max of them
 * into refs; *n is how many there are in all. drop_lookup: in a snapshot
 * of its own.
 */
int drop_lookup_txn(struct vault *v, struct store_txn *txn, enum drop_list l,
    const uint8_t hash[DROP_HASH_BYTES], uint8_t (*refs)[32], size_t max,
    size_t *n) VAULT_WUR;
int drop_lookup(struct vault *v, enum drop_list l,
    const uint8_t hash[DROP_HASH_BYTES], uint8_t (*refs)[32], size_t max,
    size_t *n) VAULT_WUR;


#endif
