/*
 * Principals and their roles, from the policy file.
 *
 * Bearer tokens are never stored: the policy holds keyed BLAKE2b-256 hashes
 * of them under a pepper kept in its own 0600 file. Tokens are random and
 * long, so a fast keyed hash is right here (a password would need Argon2id).
 */
#ifndef VAULT_AUTH_H
#define VAULT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vault_err.h"

enum role {
	ROLE_WRITER = 1u << 0,
	ROLE_READER = 1u << 1,
	ROLE_ML = 1u << 2,
	ROLE_PRIVACY = 1u << 3,
	ROLE_KEYADMIN = 1u << 4,
	ROLE_AUDITOR = 1u << 5,
	ROLE_ALL = (1u << 6) - 1,
};

#define AUTH_HASH_BYTES 32
#define AUTH_NAME_MAX 128

struct principal {
	char name[AUTH_NAME_MAX];
	uint32_t roles;
	uint8_t token_hash[AUTH_HASH_BYTES];
	bool all_purposes;
	char **purposes;
	size_t n_purposes;
};

struct auth;

/* Loads the policy and the token pepper; errors go to err with a line number. */
int auth_load(struct auth **out, const char *policy_file,
    const char *pepper_file, char *err, size_t errlen) VAULT_WUR;
void auth_free(struct auth *a);

/*
 * The principal holding the token in an "authorization" header value
 * ("Bearer <token>"), or NULL. Compares every principal in constant time.
 */
const struct principal *auth_bearer(const struct auth *a, const char *header,
    size_t len);

/* True when p may act for purpose (name, len bytes). */
bool auth_purpose_allowed(const struct principal *p, const char *purpose,
    size_t len);

/* Parses a role name ("writer", ...); 0 when unknown. */
uint32_t auth_role_parse(const char *name);

/* Hex of the keyed hash of token: what a policy file stores. */
void auth_token_hash_hex(const uint8_t *pepper, const char *token, size_t len,
    char hex[AUTH_HASH_BYTES * 2 + 1]);

#endif
