/*
 * FetchFeatures page tokens.
 *
 * A token is sealed (XChaCha20-Poly1305 under the page-token key,
 * tokenizer_page_key) around the stream position to resume after, with the
 * query binding as associated data: a hash of the caller's principal, the
 * purpose, the dataset, the attribute list, each attribute's feature
 * definition and the shard of a sharded call (made by the handler). So a token is opaque (fresh nonce each
 * time: no stable identifier), cannot be edited, and resumes nothing but
 * the query that made it.
 *
 *   token = base64url, no padding, of a sealed blob (crypto.h) with key
 *           version PAGETOKEN_VERSION around order(8, big endian) | ref(32)
 */
#ifndef VAULT_PAGETOKEN_H
#define VAULT_PAGETOKEN_H

#include <stdint.h>

#include "crypto/crypto.h"
#include "engine/fetch.h"
#include "util/vault_err.h"

#define PAGETOKEN_VERSION 2		/* in the sealed blob's key-version field */
#define PAGETOKEN_BIND_BYTES 32
/* The longest token text with its NUL. */
#define PAGETOKEN_CHARS 128

/* Seals pos into the token text out, bound to bind. */
int pagetoken_encode(const uint8_t key[CRYPTO_KEY_BYTES],
    const struct fetch_pos *pos, const uint8_t bind[PAGETOKEN_BIND_BYTES],
    char out[PAGETOKEN_CHARS]) VAULT_WUR;

/*
 * Opens token text tok (NUL-terminated, non-empty) bound to bind into *pos.
 * VAULT_ERR_INVALID with *why, a caller-safe message for the page_token
 * field (never its content), when it is not a token of this query.
 */
int pagetoken_decode(const uint8_t key[CRYPTO_KEY_BYTES], const char *tok,
    const uint8_t bind[PAGETOKEN_BIND_BYTES], struct fetch_pos *pos,
    const char **why) VAULT_WUR;

#endif
