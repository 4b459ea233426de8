/*
 * Consumers and their attributes: put, get and delete, all encrypted under
 * the consumer's own data key (DEK), which the master key wraps.
 *
 * consumers: ref -> fmt(1) | master version(4) | dek generation(4) |
 *            created ms(8) | wrapped DEK (sealed, AD = ref | "dek" | version)
 * attrs:     ref | name -> fmt(1) | updated ms(8) | expires ms(8) |
 *            sealed value (AD = ref | name | dek generation)
 */
#ifndef VAULT_CONSUMER_H
#define VAULT_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "schema.h"
#include "vault.h"

/* One validated attribute to write: schema index and value bytes. */
struct attr_in {
	int attr;
	const char *value;
	size_t len;
};

/*
 * Writes attrs for consumer id, creating the consumer on its first put. All
 * or nothing; durable when it returns 0. The caller has validated attrs
 * against the schema (consumer_validate_put).
 */
int consumer_put(struct vault *v, const char *id, size_t id_len,
    const struct attr_in *attrs, size_t n, bool *created,
    uint8_t ref[CRYPTO_REF_BYTES]) VAULT_WUR;

struct attr_out {
	int attr;
	const char *value;	/* in the result's locked buffer */
	size_t len;
	uint64_t updated_ms;
};

struct consumer_values {
	uint8_t ref[CRYPTO_REF_BYTES];
	size_t n;
	struct attr_out v[SCHEMA_MAX_ATTRS];
	uint8_t *buf;		/* locked; consumer_values_clear wipes it */
};

/*
 * Reads and decrypts the attributes at schema indexes attrs (all the
 * consumer has when n_attrs is 0). Attributes never set are left out.
 * VAULT_ERR_NOT_FOUND when the consumer does not exist.
 */
int consumer_get(struct vault *v, const char *id, size_t id_len,
    const int *attrs, size_t n_attrs, struct consumer_values *out) VAULT_WUR;
void consumer_values_clear(struct consumer_values *cv);

struct deletion {
	uint8_t ref[CRYPTO_REF_BYTES];
	bool found;
	uint64_t deleted_at_ms;
	uint32_t epoch;		/* master version that wrapped the DEK */
};

/* Removes the consumer's wrapped DEK and its attributes in one transaction. */
int consumer_delete(struct vault *v, const char *id, size_t id_len,
    struct deletion *out) VAULT_WUR;

#endif
