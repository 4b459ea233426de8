#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "audit/journal.h"
#include "crypto/keyprov.h"
#include "util/log.h"
#include "engine/vault.h"

static int
make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	log_error("cannot create %s: %s", path, strerror(errno));
	return VAULT_ERR_IO;
}

/*
 * Before anything is opened or written: a lost store is not replaced by a
 * new, empty one while its keys are there, and --init makes a new vault
 * only where there is neither store nor master key, so an old key never
 * serves a new store (an old backup and the new store would then open
 * under one key, and be taken for one another).
 */
/*
 * key_provider = "pkcs11": logs in to the token (*prov NULL for "file").
 * The cause of a failure (module, label, PIN file, CKR_ code) is logged.
 */
static int
open_key_provider(const struct config *cfg, struct keyprov **prov)
{
	struct keyprov_pkcs11_conf pc = { cfg->pkcs11_module,
	    cfg->pkcs11_token_label, cfg->pkcs11_pin_file };
	char err[512];
	int r;

	*prov = NULL;
	if (strcmp(cfg->key_provider, "pkcs11") != 0)
		return 0;
	if ((r = keyprov_pkcs11_open(prov, &pc, err, sizeof(err))) != 0)
		log_error("key_provider = \"pkcs11\": %s", err);
	else
		log_info("master keys on the PKCS#11 token \"%s\" (module %s)",
		    cfg->pkcs11_token_label, cfg->pkcs11_module);
	return r;
}

/* Whether the master keys exist: files in keys_dir, or token objects. */
static int
has_master_keys(const struct config *cfg, struct keyprov *prov, bool *keys)
{
	uint32_t *vs = NULL;
	size_t n;
	int r;

	if (prov == NULL)
		return keyring_dir_has_keys(cfg->keys_dir, keys);
	if ((r = keyprov_versions(prov, &vs, &n)) != 0)
		return r;
	free(vs);
	*keys = n > 0;
	return 0;
}

static int
check_new_or_existing(const struct config *cfg, struct keyprov *prov,
    enum vault_open_mode mode)
{
	const char *where = prov != NULL ? "the PKCS#11 token" : cfg->keys_dir;
	const char *what = prov != NULL ? "master key objects" :
	    "master key files";
	struct store_params sp;
	bool store, keys;
	char here[4096];
	int r;

	config_store_params(cfg, &sp);
	/* Where the store is, for messages: never the conninfo (a password). */
	if (sp.kind == STORE_KIND_POSTGRESQL)
		snprintf(here, sizeof(here), "the PostgreSQL database");
	else
		snprintf(here, sizeof(here), "%s", cfg->store_dir);
	if ((r = store_exists_params(&sp, &store)) != 0 ||
	    (r = has_master_keys(cfg, prov, &keys)) != 0)
		return r;
	if (mode == VAULT_OPEN_INIT && store) {
		log_error("--init: a store exists in %s; --init creates a new "
		    "vault only where there is none", here);
		return VAULT_ERR_STATE;
	}
	if (mode == VAULT_OPEN_INIT && keys) {
		log_error("--init: %s holds %s; a new vault must not reuse "
		    "another vault's keys: move them aside (keep them while any "
		    "backup of the old store may need them)%s, then start with "
		    "--init", where, what, prov != NULL ? ", or use another token" :
		    "");
		return VAULT_ERR_STATE;
	}
	if (store)
		return 0;
	if (keys) {
		log_error("the store is missing but keys for it exist; restore it, "
		    "or start with --init to create a new vault (%s%s; %s holds "
		    "%s, which --init needs moved aside)", here,
		    sp.kind == STORE_KIND_LMDB ? "/data.mdb is missing or empty" :
		    " holds no store", where, what);
		return VAULT_ERR_STATE;
	}
	if (mode == VAULT_OPEN_EXISTING) {
		log_error("no vault: no store in %s and no master key in %s; to "
		    "create a new vault, start once with --init", here, where);
		return VAULT_ERR_STATE;
	}
	if ((r = make_dir(cfg->keys_dir)) != 0 ||
	    (r = make_dir(cfg->store_dir)) != 0)
		return r;
	return 0;
}

/*
 * The store journal's MAC key: from the audit key, a vault key that stays
 * the same for the vault's life (rotation rewraps it), so the records of
 * any run verify under the keyring as of any checkpoint.
 */
static void
journal_key(const struct keyring *kr, uint8_t out[STORE_JOURNAL_KEY_BYTES])
{
	static const char domain[] = "vaultd store journal key v1";

	crypto_generichash(out, STORE_JOURNAL_KEY_BYTES,
	    (const uint8_t *)domain, sizeof(domain) - 1, keyring_audit_key(kr),
	    CRYPTO_KEY_BYTES);
}

/*
 * A crash left journaled writes: the store reads as of the checkpoint, and
 * so did the keyring that just opened. Replays them, then brings the
 * keyring up to the versions they activated or destroyed.
 */
static int
replay_journal(struct vault *v)
{
	uint8_t key[STORE_JOURNAL_KEY_BYTES];
	int r;

	if (v->cfg->replica_name != NULL && (store_journal_pending(v->store) ||
	    store_journal_foreign(v->store))) {
		log_error("the store holds the journal of a single vaultd (no "
		    "replica_name): it runs, or stopped without closing. Stop it, "
		    "or start it once without replica_name to recover, then "
		    "start the replicas");
		return VAULT_ERR_STATE;
	}
	if (!store_journal_pending(v->store))
		return 0;
	journal_key(v->kr, key);
	r = store_journal_replay(v->store, key);
	sodium_memzero(key, sizeof(key));
	if (r == 0)
		r = keyring_refresh(v->kr);
	return r;
}

/*
 * The store's write-ahead journal, for every commit from here on: a single
 * node writes its store alone (replicas sync LMDB at each commit).
 */
static int
start_journal(struct vault *v, bool exclusive)
{
	uint8_t key[STORE_JOURNAL_KEY_BYTES];
	int r;

	if (v->cfg->replica_name != NULL || !exclusive)
		return 0;
	journal_key(v->kr, key);
	r = store_journal_start(v->store, key);
	sodium_memzero(key, sizeof(key));
	/* A full disk: every commit syncs LMDB, as replicas' do. */
	if (r == VAULT_ERR_NOSPACE) {
		log_warn("store journal: no room on the disk for its files; "
		    "running without it (each commit syncs the data file)");
		return 0;
	}
	return r;
}

/* Two meta gets per group unless another replica changed a key version. */
static int
keyring_prelude(struct store_txn *txn, void *arg)
{
	return keyring_refresh_txn(arg, txn);
}

/* vault_open; exclusive: this process alone writes the store (locked). */
static int
open_vault(struct vault **out, const struct config *cfg,
    enum vault_open_mode mode, bool exclusive)
{
	struct vault *v;
	struct keyprov *prov = NULL;
	struct store_params sp;
	bool shared;
	int r;

	*out = NULL;
	if ((r = open_key_provider(cfg, &prov)) != 0)
		return r;
	if ((r = check_new_or_existing(cfg, prov, mode)) != 0 ||
	    (v = calloc(1, sizeof(*v))) == NULL) {
		keyprov_free(prov);
		return r != 0 ? r : VAULT_ERR_NOMEM;
	}
	v->cfg = cfg;
	v->schema = &cfg->schema;
	v->owner_fd = -1;
	config_store_params(cfg, &sp);
	sp.exclusive = exclusive;
	if ((r = store_open_params(&v->store, &sp)) != 0)
		goto fail;
	store_set_headroom(v->store, cfg->store_high_water_pct,
	    (size_t)cfg->disk_reserve_mb << 20);
	r = keyring_open_provider(&v->kr, v->store, cfg->keys_dir, prov,
	    mode != VAULT_OPEN_EXISTING);
	prov = NULL;	/* the keyring's now, also on failure */
	if (r != 0 || (r = replay_journal(v)) != 0)
		goto fail;
	shared = cfg->replica_name != NULL || sp.kind == STORE_KIND_POSTGRESQL;
	keyring_set_shared(v->kr, shared);
	if ((r = tokenizer_new(&v->tok, v->schema,
	    keyring_token_root(v->kr))) != 0)
		goto fail;
	if ((r = start_journal(v, exclusive)) != 0 ||
	    (r = writer_start(&v->wr, v->store, (unsigned)cfg->max_group)) != 0)
		goto fail;
	/*
	 * First in every group: the key versions other replicas changed. A
	 * single node changes them only itself, and pays nothing for it.
	 */
	if (shared)
		writer_add_prelude(v->wr, keyring_prelude, NULL, v->kr);
	v->audit = (struct audit_log){ .store = v->store, .wr = v->wr,
	    .kr = v->kr, .replica = cfg->replica_name,
	    .journal_reserve = (size_t)cfg->audit_journal_reserve_mb << 20 };
	if ((r = audit_index_init(&v->audit)) != 0)
		goto fail;
	*out = v;
	return 0;
fail:
	keyprov_free(prov);
	vault_close(v);
	return r;
}

int
vault_open(struct vault **out, const struct config *cfg,
    enum vault_open_mode mode)
{
	return open_vault(out, cfg, mode, false);
}

int
vault_lock_store(const struct config *cfg, bool exclusive, int *fd)
{
	char path[4096];
	int err;

	*fd = -1;
	if (strcmp(cfg->store_backend, "postgresql") == 0)
		return 0;	/* store_dir holds this replica's files only */
	if ((size_t)snprintf(path, sizeof(path), "%s/vaultd.lock",
	    cfg->store_dir) >= sizeof(path)) {
		log_error("the store directory's path is too long");
		return VAULT_ERR_INVALID;
	}
	if ((*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0) {
		if (errno == ENOENT)
			return 0;	/* no store yet: nothing to share */
		log_error("cannot open %s: %s", path, strerror(errno));
		return VAULT_ERR_IO;
	}
	if (flock(*fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
		return 0;
	err = errno;
	close(*fd);
	*fd = -1;
	if (err != EWOULDBLOCK) {
		log_error("cannot lock %s: %s", path, strerror(err));
		return VAULT_ERR_IO;
	}
	if (exclusive)
		log_error("%s is locked: another vaultd serves this store. "
		    "Several processes on one store need replica_name, each its "
		    "own (docs/config.md)", path);
	else
		log_error("%s is locked: a vaultd without replica_name serves "
		    "this store, and replicas join only a store that replicas "
		    "serve (docs/config.md)", path);
	return VAULT_ERR_STATE;
}

int
vault_open_locked(struct vault **out, const struct config *cfg,
    enum vault_open_mode mode, bool exclusive)
{
	int fd, r;

	*out = NULL;
	if ((r = vault_lock_store(cfg, exclusive, &fd)) != 0)
		return r;
	if ((r = open_vault(out, cfg, mode, exclusive)) != 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	(*out)->owner_fd = fd;	/* -1 for a new store: the journal takes it */
	return 0;
}

int
vault_open_journal(struct vault *v)
{
	const char *dir = v->cfg->journal_dir != NULL ? v->cfg->journal_dir :
	    v->cfg->store_dir;
	int r;

	/* Taken here unless the caller took it before opening the vault. */
	if (v->owner_fd < 0 && (r = vault_lock_store(v->cfg,
	    v->cfg->replica_name == NULL, &v->owner_fd)) != 0)
		return r;
	/*
	 * A replica's own journal_dir, or (PostgreSQL) the store_dir that holds
	 * only this replica's local files: made on its first start, which is
	 * not the vault's. (An LMDB store_dir is made with the store.)
	 */
	if ((v->cfg->journal_dir != NULL ||
	    strcmp(v->cfg->store_backend, "postgresql") == 0) &&
	    (r = make_dir(dir)) != 0)
		return r;

	return journal_open(&v->audit.jn, &v->audit, dir,
	    JOURNAL_INGEST_MS, JOURNAL_INDEX_MS);
}

static int
ping_apply(struct store_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 0;
}

void
vault_ping(struct vault *v)
{
	/* The result does not matter: a full store still answers. */
	if (writer_submit_lazy(v->wr, ping_apply, NULL) != 0)
		log_debug("watchdog: the writer answered with an error");
}

void
vault_close(struct vault *v)
{
	if (v == NULL)
		return;
	journal_close(v->audit.jn);
	writer_stop(v->wr);
	tokenizer_free(v->tok);
	keyring_free(v->kr);
	store_close(v->store);
	if (v->owner_fd >= 0)
		close(v->owner_fd);
	free(v);
}
