/*
 * Key providers: where the 32 bytes of a master key version come from, how
 * a version is created and how it is destroyed.
 *
 * A provider hands out a version's working key (32 bytes) into memory the
 * caller owns, locked (crypto_secret_alloc); the caller wipes it when the
 * version is forgotten. What sits behind it differs:
 *
 *   - pkcs11 (keyprov_pkcs11_open): each version is a token object of a
 *     PKCS#11 token (an HSM; SoftHSM2 in the tests) labelled
 *     "vaultd-master-<version>": a 32-byte CKK_GENERIC_SECRET, sensitive,
 *     not extractable, stored on the token. The working key is derived
 *     inside the token as HMAC-SHA256(token key, "vaultd master key
 *     v1|<version>") (C_Sign with CKM_SHA256_HMAC): the token key itself
 *     never leaves the token, and nothing of it is ever on vaultd's disk.
 *     Destroying a version destroys the token object (C_DestroyObject):
 *     every copy of the store, every replica and every backup loses that
 *     version at once.
 *
 * The file provider (master-<version>.key files) still lives in keyring.c
 * (keyring_open_provider with no provider): its start-up rules (a stray or
 * broken file set aside, a .tmp left by a crash wiped, a refused start
 * changing no file) are bound to the store's checks there, and moving them
 * behind this interface is a refactoring of its own.
 *
 * Thread safety: every call may run on any thread; a provider serialises
 * its own calls (one PKCS#11 session per provider, under a mutex).
 */
#ifndef VAULT_KEYPROV_H
#define VAULT_KEYPROV_H

#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

struct keyprov;

/* What keyprov_pkcs11_open needs: plain values, parsed by the caller. */
struct keyprov_pkcs11_conf {
	const char *module;		/* path of the PKCS#11 module (.so) */
	const char *token_label;	/* the token's CKA_LABEL, unpadded */
	const char *pin_file;		/* the user PIN: mode 0600, our owner */
};

/*
 * Loads the module, finds the token by label, opens a read-write session
 * and logs in as the user with the PIN from pin_file (the PIN is wiped
 * from memory at once). On failure, err (errlen bytes) says why, with the
 * PKCS#11 return value by name ("C_Login: CKR_PIN_INCORRECT"), never the
 * PIN. VAULT_ERR_KEY: the token or the PIN file is not usable;
 * VAULT_ERR_CONFIG: the module or label is wrong.
 */
int keyprov_pkcs11_open(struct keyprov **out,
    const struct keyprov_pkcs11_conf *conf, char *err,
    size_t errlen) VAULT_WUR;

/* Logs out, closes the session, unloads the module. NULL-safe. */
void keyprov_free(struct keyprov *p);

/* "pkcs11": for messages. */
const char *keyprov_name(const struct keyprov *p);

/*
 * Creates version (a new token object). VAULT_ERR_EXISTS when the
 * provider already holds it: a version is never created twice.
 */
int keyprov_create(struct keyprov *p, uint32_t version) VAULT_WUR;

/*
 * The working key of version into key (CRYPTO_KEY_BYTES, locked memory the
 * caller owns; wiped on failure). VAULT_ERR_NOT_FOUND when the provider
 * does not hold version (never created, or destroyed).
 */
int keyprov_load(struct keyprov *p, uint32_t version, uint8_t *key) VAULT_WUR;

/*
 * Destroys version for good. 0 also when it is already gone, so that an
 * interrupted destruction can be finished.
 */
int keyprov_destroy(struct keyprov *p, uint32_t version) VAULT_WUR;

/*
 * Every version the provider holds, in no particular order: *out is an
 * array of *n, allocated here (free it; NULL when *n is 0).
 */
int keyprov_versions(struct keyprov *p, uint32_t **out, size_t *n) VAULT_WUR;

#endif
