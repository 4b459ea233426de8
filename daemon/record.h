/*
 * On-disk records of a consumer and their sealing.
 *
 * consumers: ref -> fmt(1) | master version(4) | dek generation(4) |
 *            created ms(8) | wrapped DEK | sealed pseudonym seed
 *   wrapped DEK: sealed under the master key, AD = ref | "dek" | version
 *   seed:        sealed under the DEK, AD = ref | "seed" | generation
 * attrs:     ref | name -> fmt(1) | updated ms(8) | expires ms(8) |
 *            sealed value (under the DEK, AD = ref | name | generation)
 *
 * Pointers in a parsed record point into the LMDB map and die with the
 * transaction that read them.
 */
#ifndef VAULT_RECORD_H
#define VAULT_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "crypto.h"
#include "keyring.h"
#include "schema.h"
#include "vault_err.h"

#define RECORD_FORMAT 1
#define RECORD_SEALED_KEY_BYTES (CRYPTO_KEY_BYTES + CRYPTO_OVERHEAD)
#define RECORD_CONSUMER_HDR (1 + 4 + 4 + 8)
#define RECORD_CONSUMER_BYTES (RECORD_CONSUMER_HDR + 2 * RECORD_SEALED_KEY_BYTES)
#define RECORD_ATTR_HDR (1 + 8 + 8)
#define RECORD_ATTR_KEY_MAX (CRYPTO_REF_BYTES + SCHEMA_NAME_MAX)
#define RECORD_ATTR_MAX (RECORD_ATTR_HDR + SCHEMA_VALUE_MAX + CRYPTO_OVERHEAD)
/* Locked room to work on one consumer: DEK, seed, one NUL-ended value. */
#define RECORD_SCRATCH_BYTES (2 * CRYPTO_KEY_BYTES + SCHEMA_VALUE_MAX + 1)

struct consumer_rec {
	uint32_t master_version;
	uint32_t dek_generation;
	uint64_t created_ms;
	const uint8_t *wrapped_dek;
	const uint8_t *sealed_seed;
};

int record_parse_consumer(const MDB_val *v, struct consumer_rec *rec) VAULT_WUR;

/* Makes a new DEK and seed (into locked dek and seed) and the record sealing them. */
int record_new_consumer(const struct keyring *kr, const uint8_t *ref,
    uint8_t *dek, uint8_t *seed, uint8_t out[RECORD_CONSUMER_BYTES]) VAULT_WUR;

/* Wraps dek under master key version into out (RECORD_SEALED_KEY_BYTES). */
int record_wrap_dek(const struct keyring *kr, const uint8_t *ref,
    uint32_t version, const uint8_t *dek, uint8_t *out) VAULT_WUR;
/* Seals seed under dek of generation into out (RECORD_SEALED_KEY_BYTES). */
int record_seal_seed(const uint8_t *dek, const uint8_t *ref,
    uint32_t generation, const uint8_t *seed, uint8_t *out) VAULT_WUR;

/* Opens the DEK (VAULT_ERR_KEY when its master version is not loaded). */
int record_unwrap_dek(const struct keyring *kr, const uint8_t *ref,
    const struct consumer_rec *rec, uint8_t *dek) VAULT_WUR;
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
    uint32_t generation, const MDB_val *v, uint8_t *out, size_t cap,
    size_t *len, uint64_t *updated_ms) VAULT_WUR;

#endif
