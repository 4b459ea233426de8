/*
 * Master key versions and the vault keys they wrap.
 *
 * Master keys are files named master-<version>.key in the keys directory:
 * exactly 32 random bytes, mode 0600 or stricter, owned by the daemon's
 * user; or, with a key provider (keyring_open_provider, crypto/keyprov.h),
 * objects on a PKCS#11 token, where "file" below then reads "token
 * object": created, loaded and destroyed there, never on disk. The store keeps a record per version (key check value, created,
 * destroyed), so a wrong key file is refused at start, before anything is
 * written. The vault keys, random and sealed under the active master key in
 * the store's meta database, are the index key (consumer id -> consumer
 * ref), the tokenization root key, the seed of the Ed25519 receipt signing
 * key, and the audit chain key. Activating a version rewraps them under it.
 *
 * Thread safety: lookups (keyring_master, keyring_active_version, the vault
 * keys, keyring_sign) may run on any thread at any time. Changes run in the
 * writer thread: keyring_load_version, then keyring_activate_txn inside a
 * transaction and keyring_set_active once it committed (or
 * keyring_discard_version when it did not); likewise keyring_destroy_txn
 * then keyring_forget.
 *
 * Versions only move forward: a version can be activated only when it is
 * newer than every version the store has recorded, destroyed ones included.
 * At most 1024 versions can be loaded in one process (destroyed ones
 * included); the store may record any number.
 */
#ifndef VAULT_KEYRING_H
#define VAULT_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "store/store.h"
#include "util/vault_err.h"

#define KEYRING_SIG_BYTES 64
#define KEYRING_PK_BYTES 32

struct keyring;

/*
 * Loads every master key in keys_dir and checks it against the store. A
 * key file that cannot be used is fatal when the store uses its version;
 * of a version the store never recorded, it is set aside (renamed to
 * master-<v>.key.unusable-<time>) once the keyring opened. Files of
 * destroyed versions are wiped and removed. On a new store, adopts the highest version as active (generating master-1.key
 * first when create is set and the directory has none), records the key
 * versions and creates the vault keys. Must run before the writer starts.
 */
int keyring_open(struct keyring **out, struct store *st, const char *keys_dir,
    bool create) VAULT_WUR;
/*
 * The same with the master keys in a key provider (crypto/keyprov.h)
 * instead of files in keys_dir: each version is the provider's, created
 * and destroyed there; nothing of a key is written to keys_dir. Takes
 * prov (NULL: files, as keyring_open), freed with the keyring or here on
 * failure.
 */
struct keyprov;
int keyring_open_provider(struct keyring **out, struct store *st,
    const char *keys_dir, struct keyprov *prov, bool create) VAULT_WUR;
void keyring_free(struct keyring *kr);

/*
 * Whether keys_dir holds a master key file (master-<version>.key); a
 * missing directory holds none. Reads names only, never a key.
 */
int keyring_dir_has_keys(const char *keys_dir, bool *found) VAULT_WUR;

uint32_t keyring_active_version(const struct keyring *kr);
/* The master key of version, or NULL when it is not loaded or destroyed. */
const uint8_t *keyring_master(const struct keyring *kr, uint32_t version);
const uint8_t *keyring_index_key(const struct keyring *kr);
/* The tokenization root key: only rewrapped on rotation, so tokens stay stable. */
const uint8_t *keyring_token_root(const struct keyring *kr);
const uint8_t *keyring_receipt_public_key(const struct keyring *kr);
/* Keys the audit log's hash chain: without it no entry can be forged. */
const uint8_t *keyring_audit_key(const struct keyring *kr);
void keyring_sign(const struct keyring *kr, const uint8_t *msg, size_t len,
    uint8_t sig[KEYRING_SIG_BYTES]);

/* One past the highest version the keyring or the store has seen. */
uint32_t keyring_next_version(const struct keyring *kr);

/*
 * Makes version usable: reads master-<version>.key, or creates it when
 * create is set and it does not exist. Does not activate it.
 */
int keyring_load_version(struct keyring *kr, uint32_t version,
    bool create) VAULT_WUR;
/*
 * Undoes keyring_load_version when the activation did not commit: wipes the
 * key from memory and, when keyring_load_version created its file, wipes
 * and removes the file, so a later start does not take it up. The version
 * can be loaded again. VAULT_ERR_STATE (nothing done) when the store has
 * recorded version.
 */
int keyring_discard_version(struct keyring *kr, uint32_t version) VAULT_WUR;

/* Within txn: the highest version the store has recorded (0: none). */
int keyring_highest_txn(struct store_txn *txn,
    uint32_t *highest) VAULT_WUR;

/*
 * In a write txn: records version, makes it active, rewraps the vault keys.
 * VAULT_ERR_STATE when version is not newer than every recorded version.
 */
int keyring_activate_txn(struct keyring *kr, struct store_txn *txn,
    uint32_t version) VAULT_WUR;
/* After that txn committed. */
void keyring_set_active(struct keyring *kr, uint32_t version);
/*
 * Other processes (replicas) use this keyring's key files or token objects
 * too: a version this one created but failed to start is forgotten here
 * and left in place (another replica may be activating it), not removed.
 */
void keyring_set_shared(struct keyring *kr, bool shared);
bool keyring_shared(const struct keyring *kr);

/*
 * Destroying a version takes three steps, so that no crash leaves a usable
 * key of a version the store calls destroyed:
 *
 *   1. keyring_destroy_begin_txn in a durable write txn: the version is
 *      "being destroyed"; from then on no start loads it, and every start
 *      wipes its file.
 *   2. keyring_forget: wipes the key from memory, overwrites and removes
 *      its file, syncs the keys directory.
 *   3. keyring_destroy_txn in a write txn: destroyed at when_ms.
 *
 * keyring_destroy_begin_txn: VAULT_ERR_NOT_FOUND (no such version),
 * VAULT_ERR_STATE (already destroyed); *already when step 1 was done
 * before (a retry, or an interrupted destruction being finished).
 * keyring_destroy_txn: VAULT_ERR_STATE unless step 1 was done.
 */
int keyring_destroy_begin_txn(struct keyring *kr, struct store_txn *txn,
    uint32_t version, bool *already) VAULT_WUR;
int keyring_forget(struct keyring *kr, uint32_t version) VAULT_WUR;
int keyring_destroy_txn(struct keyring *kr, struct store_txn *txn,
    uint32_t version, uint64_t when_ms) VAULT_WUR;

struct key_version {
	uint32_t version;
	bool destroyed;		/* destroyed, or being destroyed */
	bool destroy_pending;	/* being destroyed: steps 2-3 not done */
	bool loaded;
	uint64_t created_ms, destroyed_ms;
};

/*
 * Every key version the store has recorded, destroyed ones included,
 * ascending: *out is an array of *n, allocated here (free it; NULL when *n
 * is 0).
 */
int keyring_versions(const struct keyring *kr, struct store_txn *txn,
    struct key_version **out, size_t *n) VAULT_WUR;
/* One version's record; VAULT_ERR_NOT_FOUND when the store has none. */
int keyring_version_get(const struct keyring *kr, struct store_txn *txn,
    uint32_t version, struct key_version *out) VAULT_WUR;

/*
 * Several replicas on one store. Another replica's rotation or destruction
 * changes the store's key version records and active version under this
 * process; these bring the keyring up to date with them.
 *
 * keyring_active_txn: the active version the store records within txn.
 *
 * keyring_refresh_txn: two meta gets (the active version and the key
 * generation, which every activation and destruction step moves) and
 * nothing more unless one of them moved forward. Then destroyed versions
 * (and versions being destroyed) are wiped from memory, live versions not
 * loaded are loaded, keyring_next_version moves up, and a newer active
 * version is loaded and made active. VAULT_ERR_KEY when the store's active
 * version cannot be loaded here (no key file or token object, or a wrong
 * one): the writer's prelude then fails the group, rather than wrap new
 * keys under a version the store has left. Runs first in every writer
 * group (engine/vault.c), and every second in a read transaction
 * (keyring_refresh, engine/replica.c), so an idle replica too forgets a
 * destroyed key within a second.
 *
 * keyring_master_load: keyring_master into *key, but a version the store
 * records live (within txn, the caller's, read or write) that is not loaded
 * yet is loaded first: for records another replica rewrapped under a
 * version newer than this process has seen. No transaction of its own, so
 * a reader holding PostgreSQL's last pooled connection never waits for
 * another. *key NULL as keyring_master; VAULT_ERR_UNAVAILABLE (retryable)
 * when txn's snapshot is older than the keyring's view of the versions
 * (another replica may be destroying that one); a store error as such.
 */
int keyring_active_txn(struct store_txn *txn, uint32_t *active) VAULT_WUR;
int keyring_refresh_txn(struct keyring *kr, struct store_txn *txn) VAULT_WUR;
int keyring_refresh(struct keyring *kr) VAULT_WUR;
int keyring_master_load(const struct keyring *kr, struct store_txn *txn,
    uint32_t version, const uint8_t **key) VAULT_WUR;

/*
 * Reads a master key file into key (locked memory of CRYPTO_KEY_BYTES).
 * VAULT_ERR_KEY when it is not a regular file of exactly 32 bytes, or when
 * group or others may access it; the reason goes to the log.
 */
int keyring_read_key_file(const char *path, uint8_t *key) VAULT_WUR;
/* The same checks for any 32-byte secret file; what names it in the log. */
int keyring_read_secret_file(const char *path, uint8_t *key,
    const char *what) VAULT_WUR;

/*
 * Creates path (which must not exist) with 32 random bytes, mode 0600,
 * atomically (fsutil.h; crash points keyfile.after_create and
 * keyfile.before_rename).
 */
int keyring_create_key_file(const char *path) VAULT_WUR;
int keyring_create_secret_file(const char *path, const char *what) VAULT_WUR;

#endif
