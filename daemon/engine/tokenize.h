/*
 * Tokens and pseudonyms for ML features.
 *
 * All keys derive from the tokenization root key (keyring_token_root), which
 * master key rotation only rewraps: tokens and pseudonyms stay stable.
 *
 *   token key (purpose, attr) = BLAKE2b-256(root, "token|" purpose "|" attr)
 *   count key (attr)          = BLAKE2b-256(root, "count|" attr)
 *   category token            = BLAKE2b-64(token key, value) & (2^63 - 1),
 *                               never 0
 *   OTHER token               = BLAKE2b-64(token key, "\0OTHER") & (2^63 - 1)
 *   pseudonym                 = BLAKE2b-128(seed, purpose)
 *   order key (purpose)       = BLAKE2b-256(root, "order|" purpose)
 *   stream position           = BLAKE2b-64(order key, consumer ref)
 *   lineage key               = BLAKE2b-256(root, "lineage-tag")
 *   lineage tag               = BLAKE2b-64(lineage key, dataset be32 | ref)
 *   page-token key            = BLAKE2b-256(root, "page-token")
 *
 * A purpose's stream comes in stream-position order: a keyed permutation of
 * the consumers of its own, unrelated to any other purpose's order (row
 * positions cannot join two purposes' datasets).
 *
 * Token 0 always means "no value". Values never hold NUL, so no value hashes
 * as OTHER's input.
 */
#ifndef VAULT_TOKENIZE_H
#define VAULT_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "conf/schema.h"
#include "util/vault_err.h"

#define TOKEN_PSEUDONYM_BYTES 16
#define TOKEN_COUNT_HASH_BYTES 16
/* A counts key: attribute name, NUL, keyed hash of the value. */
#define TOKEN_COUNT_KEY_MAX (SCHEMA_NAME_MAX + 1 + TOKEN_COUNT_HASH_BYTES)

struct tokenizer;

int tokenizer_new(struct tokenizer **out, const struct schema *s,
    const uint8_t *root) VAULT_WUR;
void tokenizer_free(struct tokenizer *t);

/* The key under which the counts database keeps value's holders; its length. */
size_t tokenizer_count_key(const struct tokenizer *t, int attr,
    const char *value, size_t len, uint8_t out[TOKEN_COUNT_KEY_MAX]);

/*
 * The token of a valid value of attr for purpose (before rare-value
 * suppression). today_days: days since 1970-01-01, for age bands.
 */
uint64_t tokenizer_token(const struct tokenizer *t, int purpose, int attr,
    const char *value, size_t len, int64_t today_days);
uint64_t tokenizer_other(const struct tokenizer *t, int purpose, int attr);

void tokenizer_pseudonym(const uint8_t *seed, const char *purpose,
    uint8_t out[TOKEN_PSEUDONYM_BYTES]);

/* Where the consumer at ref comes in purpose's stream. */
uint64_t tokenizer_order(const struct tokenizer *t, int purpose,
    const uint8_t ref[CRYPTO_REF_BYTES]);

/*
 * The same by purpose name, configured or not (a dataset outlives its
 * purpose's removal from the schema; root: the tokenization root key, for
 * those). VAULT_ERR_INVALID: not a name.
 */
int tokenizer_order_named(const struct tokenizer *t, const uint8_t *root,
    const char *purpose, size_t len, const uint8_t ref[CRYPTO_REF_BYTES],
    uint64_t *order) VAULT_WUR;

/*
 * What tells the consumer at ref from others at its position in dataset's
 * lineage (lineage.h): keyed per dataset, so it names no consumer and
 * joins no two datasets without the key.
 */
uint64_t tokenizer_lineage_tag(const struct tokenizer *t, uint32_t dataset,
    const uint8_t ref[CRYPTO_REF_BYTES]);

/* The key that seals page tokens (CRYPTO_KEY_BYTES, locked). */
const uint8_t *tokenizer_page_key(const struct tokenizer *t);

/* Days since 1970-01-01 of a civil date. */
int64_t tokenize_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
