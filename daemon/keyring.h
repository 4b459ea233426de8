/*
 * Master key versions and the vault keys they wrap.
 *
 * Master keys are files named master-<version>.key in the keys directory:
 * exactly 32 random bytes, mode 0600 or stricter, owned by the daemon's user.
 * The store keeps a key check value per version, so a wrong key file is
 * refused at start, before anything is written. The vault keys, random and
 * sealed under the master key in the store's meta database, are the index
 * key (consumer id -> consumer ref) and the tokenization root key.
 */
#ifndef VAULT_KEYRING_H
#define VAULT_KEYRING_H

#include <stdbool.h>
#include <stdint.h>

#include "crypto.h"
#include "store.h"
#include "vault_err.h"

struct keyring;

/*
 * Loads every master key in keys_dir and checks it against the store. On a
 * new store, adopts the highest version as active (generating master-1.key
 * first when create is set and the directory has none), records the key
 * check values and creates the vault keys. Must run before the writer starts.
 */
int keyring_open(struct keyring **out, struct store *st, const char *keys_dir,
    bool create) VAULT_WUR;
void keyring_free(struct keyring *kr);

uint32_t keyring_active_version(const struct keyring *kr);
/* The master key of version, or NULL when it is not loaded. */
const uint8_t *keyring_master(const struct keyring *kr, uint32_t version);
const uint8_t *keyring_index_key(const struct keyring *kr);
/* The tokenization root key: survives master rotation, so tokens stay stable. */
const uint8_t *keyring_token_root(const struct keyring *kr);

/*
 * Reads a master key file into key (locked memory of CRYPTO_KEY_BYTES).
 * VAULT_ERR_KEY when it is not a regular file of exactly 32 bytes, or when
 * group or others may access it; the reason goes to the log.
 */
int keyring_read_key_file(const char *path, uint8_t *key) VAULT_WUR;

/* The same checks for any 32-byte secret file; what names it in the log. */
int keyring_read_secret_file(const char *path, uint8_t *key,
    const char *what) VAULT_WUR;

/* Creates path (which must not exist) with 32 random bytes, mode 0600. */
int keyring_create_key_file(const char *path) VAULT_WUR;
int keyring_create_secret_file(const char *path, const char *what) VAULT_WUR;

#endif
