/*
 * On-disk records of a consumer and their sealing.
 *
 * consumers: ref -> fmt(1) | master version(4) | dek generation(4) |
 *            created ms(8) | wrapped DEK | sealed pseudonym seed
 *   fmt 4: one values record, and the header (fmt to created) bound
 *   into the wrapped DEK; fmt 3: one values record, the header not bound;
 *   fmt 2: the consumer has a manifest; fmt 1: written before manifests
 *   (no manifest until its next put; see consumer.h)
 *   wrapped DEK: sealed under the master key, AD = ref | "dek" | version,
 *   and for fmt 4 the header's RECORD_CONSUMER_HDR bytes after it: a
 *   changed format byte, generation or created time fails the unwrap,
 *   so the format cannot be set back to make the consumer read as one of
 *   an older layout (its values record then unread)
 *   seed:        sealed under the DEK, AD = ref | "seed" | generation
 * attrs:     ref | name -> fmt(1) | updated ms(8) | expires ms(8) |
 *            sealed value (under the DEK, AD = ref | name | generation)
 *
 * manifests: ref -> fmt(1) | count(2) |
 *            count x (name length(1) | name | updated ms(8)) | tag(32)
 *   the consumer's attribute records, in key order, each with the updated
 *   time in its header; tag = keyed BLAKE2b-256 under the index key
 *   (personal "vaultd-manifest") over ref | the bytes before the tag.
 *   Keyed by the index key, not the DEK: a key rotation leaves it as it
 *   is, and it holds only names and times, as the attrs keys and headers.
 *
 * values:    ref -> fmt(1) | count(2) |
 *            count x (name length(1) | name | updated ms(8) |
 *            value length(2)) | sealed values
 *   kept in the attrs space under the bare ref: the one record of a
 *   consumer of format 3 (RECORD_CONSUMER_VALUES), which has no attrs
 *   records keyed ref | name and no manifest. Entries in key order by
 *   name; the sealed blob holds the values one after another, in entry
 *   order, each NUL-terminated (value length + 1 bytes), under the DEK, AD = ref | "values" | generation | the bytes
 *   before the blob: one AEAD covers every value, name and time, so it is
 *   its own manifest. The names and times are readable without the DEK,
 *   as the attrs keys and headers of the older layout were.
 *
 * Consumer formats: 1, attrs records without a manifest; 2, attrs records
 * and a manifest; 3, one values record; 4, one values record and a bound
 * header. A write (put, consumer key rotation) moves a consumer of an
 * older format to format 4, and so does a master key rotation that
 * rewraps a consumer of format 3 (whose values record stays as it is; one
 * already under the target version is not rewrapped); reads take every format
 * (consumer_values_open, consumer.h).
 *
 * Pointers in a parsed record point into the store (a store_val) and die
 * with the transaction that read them.
 */
#ifndef VAULT_RECORD_H
#define VAULT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "conf/schema.h"
#include "util/vault_err.h"

#define RECORD_FORMAT 1
#define RECORD_CONSUMER_MANIFEST 2	/* consumer format with a manifest */
#define RECORD_CONSUMER_VALUES 3	/* consumer format with one values record */
#define RECORD_CONSUMER_BOUND 4		/* the same, its header bound to the DEK */
#define RECORD_MANIFEST_FORMAT 1
#define RECORD_MANIFEST_TAG 32
#define RECORD_MANIFEST_ENTRIES (2 * SCHEMA_MAX_ATTRS)
/* Offsets of a manifest's fields (above); an entry's, from its start. */
#define RECORD_MANIFEST_COUNT 1
#define RECORD_MANIFEST_FIRST 3		/* the first entry */
#define RECORD_MANIFEST_ENTRY_NAME 1
#define RECORD_MANIFEST_ENTRY_UPDATED(name_len) (1 + (name_len))
#define RECORD_MANIFEST_ENTRY_BYTES(name_len) (1 + (name_len) + 8)
#define RECORD_MANIFEST_MAX (RECORD_MANIFEST_FIRST + RECORD_MANIFEST_ENTRIES * \
	RECORD_MANIFEST_ENTRY_BYTES(SCHEMA_NAME_MAX) + RECORD_MANIFEST_TAG)
#define RECORD_SEALED_KEY_BYTES (CRYPTO_KEY_BYTES + CRYPTO_OVERHEAD)
/* Offsets of a consumer record's fields (above). */
#define RECORD_CONSUMER_MASTER 1
#define RECORD_CONSUMER_GEN 5
#define RECORD_CONSUMER_CREATED 9
#define RECORD_CONSUMER_HDR (RECORD_CONSUMER_CREATED + 8)
#define RECORD_CONSUMER_BYTES (RECORD_CONSUMER_HDR + 2 * RECORD_SEALED_KEY_BYTES)
/* Offsets of an attribute record's fields (above). */
#define RECORD_ATTR_UPDATED 1
#define RECORD_ATTR_EXPIRES 9
#define RECORD_ATTR_HDR (RECORD_ATTR_EXPIRES + 8)
#define RECORD_ATTR_KEY_MAX (CRYPTO_REF_BYTES + SCHEMA_NAME_MAX)
#define RECORD_ATTR_MAX (RECORD_ATTR_HDR + SCHEMA_VALUE_MAX + CRYPTO_OVERHEAD)
/* A values record's fields (above) and its largest size. */
#define RECORD_VALUES_FORMAT 1
#define RECORD_VALUES_ENTRIES RECORD_MANIFEST_ENTRIES
#define RECORD_VALUES_FIRST 3
#define RECORD_VALUES_ENTRY_BYTES(name_len) (1 + (name_len) + 8 + 2)
#define RECORD_VALUES_MAX (RECORD_VALUES_FIRST + RECORD_VALUES_ENTRIES * \
	(RECORD_VALUES_ENTRY_BYTES(SCHEMA_NAME_MAX) + SCHEMA_VALUE_MAX + 1) + \
	CRYPTO_OVERHEAD)
/* Locked room to work on one consumer: DEK and seed. */
#define RECORD_SCRATCH_BYTES (2 * CRYPTO_KEY_BYTES)

struct consumer_rec {
	uint8_t format;		/* RECORD_FORMAT .. RECORD_CONSUMER_BOUND */
	uint32_t master_version;
	uint32_t dek_generation;
	uint64_t created_ms;
	bool has_manifest;	/* format 2 */
	bool one_record;	/* format 3 or 4: a values record */
	const uint8_t *hdr;	/* the clear header (RECORD_CONSUMER_HDR bytes) */
	const uint8_t *wrapped_dek;
	const uint8_t *sealed_seed;
};

int record_parse_consumer(const struct store_val *v,
    struct consumer_rec *rec) VAULT_WUR;

/* Makes a new DEK and seed (into locked dek and seed) and the record sealing them. */
int record_new_consumer(const struct keyring *kr, const uint8_t *ref,
    uint8_t *dek, uint8_t *seed, uint8_t out[RECORD_CONSUMER_BYTES]) VAULT_WUR;

/*
 * Wraps dek into the consumer record rec (RECORD_CONSUMER_BYTES), whose
 * header is filled: under the master key version in it, with the AD its
 * format calls for (above).
 */
int record_wrap_dek(const struct keyring *kr, const uint8_t *ref,
    const uint8_t *dek, uint8_t *rec) VAULT_WUR;
/* Seals seed under dek of generation into out (RECORD_SEALED_KEY_BYTES). */
int record_seal_seed(const uint8_t *dek, const uint8_t *ref,
    uint32_t generation, const uint8_t *seed, uint8_t *out) VAULT_WUR;

/* Opens the DEK (VAULT_ERR_KEY when its master version is not loaded). */
int record_unwrap_dek(const struct keyring *kr, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec, uint8_t *dek) VAULT_WUR;
int record_open_seed(const uint8_t *dek, const uint8_t *ref,
    const struct consumer_rec *rec, uint8_t *seed) VAULT_WUR;

size_t record_attr_key(uint8_t *key, const uint8_t *ref, const char *name);

/* Seals value into out (RECORD_ATTR_MAX bytes); *out_len is the record's size. */
int record_seal_attr(const uint8_t *dek, const uint8_t *ref, const char *name,
    uint32_t generation, const char *value, size_t len, uint64_t now_ms,
    uint8_t *out, size_t *out_len) VAULT_WUR;

/*
 * Opens an attribute record into out (cap bytes; the value is NUL-terminated,
 * so cap must exceed the value's length).
 */
int record_open_attr(const uint8_t *dek, const uint8_t *ref, const char *name,
    uint32_t generation, const struct store_val *v, uint8_t *out, size_t cap,
    size_t *len, uint64_t *updated_ms) VAULT_WUR;

/*
 * A consumer's manifest, verified: p points at its count (into the map, or
 * into the caller's buffer) and dies with whatever holds it.
 */
struct manifest {
	const uint8_t *p;
	size_t len;		/* bytes from p up to the tag */
	size_t n;
};

/* Checks the tag and layout of a manifest record (VAULT_ERR_CRYPTO if bad). */
int record_manifest_open(const uint8_t *index_key, const uint8_t *ref,
    const struct store_val *v, struct manifest *m) VAULT_WUR;
/* 0 and *updated when m lists name, else VAULT_ERR_NOT_FOUND. */
int record_manifest_find(const struct manifest *m, const char *name,
    size_t len, uint64_t *updated);

/* One entry of a manifest being built. */
struct manifest_entry {
	uint8_t name[SCHEMA_NAME_MAX];
	size_t len;
	uint64_t updated;
};

/*
 * Sets name to updated among e[0..*n) (cap entries), keeping key order;
 * VAULT_ERR_LIMIT when full.
 */
int record_manifest_set(struct manifest_entry *e, size_t *n, size_t cap,
    const char *name, size_t len, uint64_t updated) VAULT_WUR;
/* Serializes and tags e[0..n) into out (RECORD_MANIFEST_MAX bytes). */
size_t record_manifest_seal(const uint8_t *index_key, const uint8_t *ref,
    const struct manifest_entry *e, size_t n, uint8_t *out);
/* The entries of a verified manifest, into e (cap entries). */
int record_manifest_entries(const struct manifest *m,
    struct manifest_entry *e, size_t cap, size_t *n) VAULT_WUR;
/* The updated time in an attribute record's header (0 when malformed). */
uint64_t record_attr_updated(const struct store_val *v);

/*
 * A consumer's values, in name order. Pointers go into a store_val (the
 * names), into opened memory (the values), or into the caller's memory,
 * and die with it. An opened value is len bytes and a NUL.
 */
struct value_entry {
	const uint8_t *name;
	size_t name_len;
	uint64_t updated_ms;
	const uint8_t *value;	/* NULL until opened */
	size_t len;
	struct store_val rec;	/* older layouts: the attribute record */
};

struct value_list {
	size_t n;
	bool one_record;	/* sealed holds them all (else each its rec) */
	struct store_val head;	/* one_record: the whole values record */
	size_t need;		/* bytes the opened values take */
	struct value_entry e[RECORD_VALUES_ENTRIES];
};

/*
 * The names, times and lengths of a values record, not yet authenticated
 * (record_values_open checks them): VAULT_ERR_CRYPTO when malformed.
 * *sealed points at the blob.
 */
int record_values_names(const struct store_val *v, struct value_list *l,
    struct store_val *sealed) VAULT_WUR;
/*
 * Opens the values record v of the consumer at ref (DEK generation
 * generation) into l: values in plain (cap bytes, at least the sealed
 * blob's length less CRYPTO_OVERHEAD).
 * VAULT_ERR_CRYPTO when it fails its check.
 */
int record_values_open(const uint8_t *dek, const uint8_t *ref,
    uint32_t generation, const struct store_val *v, uint8_t *plain,
    size_t cap, struct value_list *l) VAULT_WUR;
/* The size of the values record of l. */
size_t record_values_size(const struct value_list *l);
/* Seals l (every value set) into out (record_values_size bytes). */
int record_values_seal(const uint8_t *dek, const uint8_t *ref,
    uint32_t generation, const struct value_list *l, uint8_t *out) VAULT_WUR;
/* The index of name in l, or -1. */
int record_values_find(const struct value_list *l, const char *name,
    size_t len);
/*
 * Sets name's value and time in l, keeping name order (name and value are
 * pointed at, not copied); VAULT_ERR_LIMIT when l is full.
 */
int record_values_set(struct value_list *l, const uint8_t *name, size_t len,
    uint64_t updated_ms, const uint8_t *value, size_t value_len) VAULT_WUR;
/* Removes the entry at i. */
void record_values_remove(struct value_list *l, size_t i);

#endif
