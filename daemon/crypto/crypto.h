/*
 * Sealed blobs and keyed hashes.
 *
 * A sealed blob is  format(1) | key_version(4, big endian) | nonce(24) |
 * XChaCha20-Poly1305 ciphertext | tag(16). The associated data is the
 * caller's context followed by the format byte and key version, so a blob
 * cannot be moved to another context or relabelled with another version.
 */
#ifndef VAULT_CRYPTO_H
#define VAULT_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

#define CRYPTO_KEY_BYTES 32
#define CRYPTO_REF_BYTES 32
#define CRYPTO_NONCE_BYTES 24
#define CRYPTO_TAG_BYTES 16
#define CRYPTO_FORMAT_V1 0x01
/*
 * A sealed blob: fmt(1) | key version be32 | nonce(24) | ciphertext | tag(16).
 * The header (fmt and key version) is bound into the associated data after
 * the caller's context, so neither can be changed without failing the tag.
 */
#define CRYPTO_BLOB_FMT 0		/* offsets of its fields */
#define CRYPTO_BLOB_VERSION 1
#define CRYPTO_BLOB_NONCE 5
#define CRYPTO_BLOB_AD_HEADER CRYPTO_BLOB_NONCE	/* bytes of it bound as AD */
#define CRYPTO_HEADER_BYTES (CRYPTO_BLOB_NONCE + CRYPTO_NONCE_BYTES)
#define CRYPTO_OVERHEAD (CRYPTO_HEADER_BYTES + CRYPTO_TAG_BYTES)
/* Longest context a caller may bind (consumer ref, attribute name, ...). */
#define CRYPTO_MAX_AD 256

/* Initialises libsodium; returns VAULT_ERR_INTERNAL when it cannot. */
int crypto_init(void) VAULT_WUR;

/*
 * Seals plain (plain_len bytes) under key into out, which must hold
 * plain_len + CRYPTO_OVERHEAD bytes. ad may be NULL when ad_len is 0.
 */
int crypto_seal(const uint8_t key[CRYPTO_KEY_BYTES], uint32_t key_version,
    const uint8_t *ad, size_t ad_len, const uint8_t *plain, size_t plain_len,
    uint8_t *out, size_t out_cap) VAULT_WUR;

/*
 * Opens blob into out (blob_len - CRYPTO_OVERHEAD bytes, stored in
 * *plain_len). VAULT_ERR_CRYPTO when the blob, its context or key is wrong;
 * out is wiped then.
 */
int crypto_open(const uint8_t key[CRYPTO_KEY_BYTES], const uint8_t *ad,
    size_t ad_len, const uint8_t *blob, size_t blob_len, uint8_t *out,
    size_t out_cap, size_t *plain_len) VAULT_WUR;

/* Reads the key version from a blob's header; VAULT_ERR_INVALID if short. */
int crypto_blob_version(const uint8_t *blob, size_t blob_len,
    uint32_t *version) VAULT_WUR;

/* consumer_ref = keyed BLAKE2b-256(index key, consumer id). */
void crypto_consumer_ref(const uint8_t index_key[CRYPTO_KEY_BYTES],
    const char *id, size_t id_len, uint8_t ref[CRYPTO_REF_BYTES]);

/* 16-byte key check value of a master key. */
#define CRYPTO_KCV_BYTES 16
void crypto_key_check_value(const uint8_t key[CRYPTO_KEY_BYTES],
    uint8_t kcv[CRYPTO_KCV_BYTES]);

/* Locked, guarded memory for secrets; crypto_secret_free wipes. NULL-safe. */
void *crypto_secret_alloc(size_t len);
void crypto_secret_free(void *p);
/*
 * Makes *p (locked, *cap bytes; NULL and 0 at first) hold at least need
 * bytes: a larger region replaces it, its contents wiped and lost.
 * VAULT_ERR_NOMEM when none is had (*p is NULL then).
 */
int crypto_secret_reserve(uint8_t **p, size_t *cap, size_t need) VAULT_WUR;

/*
 * 0 when memory can be locked (so keys stay out of swap); sodium_malloc
 * still works without, but its pages may be swapped.
 */
int crypto_check_mlock(void) VAULT_WUR;

/*
 * This thread's locked scratch region of at least len bytes, reused from
 * call to call (freed when the thread ends). The caller wipes what it put
 * there (sodium_memzero) before it returns. NULL when out of memory.
 */
uint8_t *crypto_scratch(size_t len);

/*
 * The same, one region per slot, so that code holding one slot's region
 * can call code that uses another's (a larger request moves the region):
 *   CRYPTO_SCRATCH_CALL    crypto_scratch: a call's DEK and values
 *   CRYPTO_SCRATCH_SEAL    record_values_seal alone, within the call
 *   CRYPTO_SCRATCH_VALUES  consumer_values_take: one write's values, until
 *                          consumer_values_release
 */
enum {
	CRYPTO_SCRATCH_CALL,
	CRYPTO_SCRATCH_SEAL,
	CRYPTO_SCRATCH_VALUES,
	CRYPTO_SCRATCH_SLOTS
};
uint8_t *crypto_scratch_slot(int slot, size_t len);

/* Lower-case hex of bin into out (2 * len + 1 bytes). */
void crypto_hex(const uint8_t *bin, size_t len, char *out);

#endif
