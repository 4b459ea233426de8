/*
 * The access policy: principals, their roles, the methods each role may
 * call, and the purposes `ml` and `reader` principals may use.
 *
 * A principal is known by a client certificate identity (its SAN, or CN
 * when it has none) or by a bearer token. Tokens are never stored: the
 * policy holds keyed BLAKE2b-256 hashes of them under a pepper kept in its
 * own 0600 file. Tokens are random and long, so a fast keyed hash is right
 * here (a password would need Argon2id).
 *
 * Deny by default: a method that no role of the caller names is denied. The
 * loader refuses a policy that would let `ml` read plaintext or export,
 * `keyadmin` read personal data, or `auditor` do anything but audit.
 *
 * A loaded policy is immutable and reference counted, so a reload can swap
 * it while calls still hold the old one.
 */
#ifndef VAULT_AUTH_H
#define VAULT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

#define AUTH_HASH_BYTES 32
#define AUTH_NAME_MAX 128
#define AUTH_MAX_ROLES 32

struct principal {
	char name[AUTH_NAME_MAX];
	uint32_t roles;			/* bit i: role i of the policy */
	bool has_token;
	uint8_t token_hash[AUTH_HASH_BYTES];
	char *identity;			/* certificate identity, or NULL */
	bool all_purposes;
	char **purposes;
	size_t n_purposes;
};

struct auth;

/*
 * Loads the policy and the token pepper. known (n_known paths) lists the
 * methods that exist; a role naming another is an error. Errors go to err
 * with the file and line.
 */
int auth_load(struct auth **out, const char *policy_file,
    const char *pepper_file, const char *const *known, size_t n_known,
    char *err, size_t errlen) VAULT_WUR;
struct auth *auth_ref(struct auth *a);
void auth_unref(struct auth *a);

/* The principal holding the token of an "authorization" header value. */
const struct principal *auth_bearer(const struct auth *a, const char *header,
    size_t len);
/* The principal with certificate identity id (len bytes), or NULL. */
const struct principal *auth_identity(const struct auth *a, const char *id,
    size_t len);

/* True when one of p's roles names method. */
bool auth_allows(const struct auth *a, const struct principal *p,
    const char *method);

/* True when p may act for purpose (name, len bytes). */
bool auth_purpose_allowed(const struct principal *p, const char *purpose,
    size_t len);

/* Hex of the keyed hash of token: what a policy file stores. */
void auth_token_hash_hex(const uint8_t *pepper, const char *token, size_t len,
    char hex[AUTH_HASH_BYTES * 2 + 1]);

#endif
