#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "util/fsutil.h"
#include "crypto/keyprov.h"
#include "crypto/keyring.h"
#include "store/meta.h"
#include "util/log.h"

#define MAX_VERSIONS 1024
/* meta kv/<be32 version> -> key version record (META_KEY_VERSION) */
#define KV_PREFIX_LEN 3
#define KV_KEY_BYTES (KV_PREFIX_LEN + 4)
/* state(1) | key check value | created ms(8) | destroyed ms(8) */
#define KV_STATE 0			/* offsets of its fields */
#define KV_KCV 1
#define KV_CREATED (KV_KCV + CRYPTO_KCV_BYTES)
#define KV_DESTROYED_AT (KV_CREATED + 8)
#define KV_RECORD_BYTES (KV_DESTROYED_AT + 8)
#define KV_LIVE 0
#define KV_DESTROYED 1
/* Being destroyed: never loaded again, its file wiped before KV_DESTROYED. */
#define KV_DESTROYING 2

/* Keys the master key wraps: stored in meta under name, sealed with ad. */
enum { VK_INDEX, VK_TOKEN, VK_RECEIPT, VK_AUDIT, VK_COUNT };
static const struct { enum meta_key meta; const char *ad; } vault_keys[VK_COUNT] = {
	[VK_INDEX] = { META_VAULT_KEY_INDEX, "vault-key|index" },
	[VK_TOKEN] = { META_VAULT_KEY_TOKEN, "vault-key|token" },
	[VK_RECEIPT] = { META_VAULT_KEY_RECEIPT, "vault-key|receipt" },
	[VK_AUDIT] = { META_VAULT_KEY_AUDIT, "vault-key|audit" },
};

struct master {
	uint32_t version;
	uint8_t *key;		/* locked; wiped when destroyed */
	atomic_bool gone;
	bool created;		/* its file was created by keyring_load_version */
	bool discarded;		/* unloaded before the store recorded it */
};

/* A master key file that did not load at start. */
struct bad_file {
	uint32_t version;		/* 0 once handled */
	bool mode;			/* its mode, owner or type: the operator's to fix */
};

struct keyring {
	struct master keys[MAX_VERSIONS];
	atomic_size_t n;		/* entries are appended, never removed */
	atomic_uint active;
	uint32_t highest;		/* highest version seen in files or store */
	uint32_t recorded;		/* highest version the store has recorded */
	uint8_t *vkeys[VK_COUNT];	/* locked */
	uint8_t *sign_sk;		/* locked: Ed25519 secret key */
	uint8_t sign_pk[KEYRING_PK_BYTES];
	char *dir;
	struct keyprov *prov;		/* NULL: master-<v>.key files in dir */
	struct store *st;
	pthread_mutex_t mu;		/* serialises changes */
	struct bad_file *bad;		/* key files that did not load, at start */
	size_t n_bad;
	/*
	 * The store's key generation (META_KEYRING_GEN) as of the last
	 * refresh: another replica's activation or destruction moves it.
	 */
	atomic_ullong gen;
	pthread_mutex_t refresh_mu;	/* one refresh at a time */
	bool shared;			/* other replicas use these keys too */
};

int
keyring_read_key_file(const char *path, uint8_t *key)
{
	return keyring_read_secret_file(path, key, "master key file");
}

int
keyring_read_secret_file(const char *path, uint8_t *key, const char *what)
{
	struct stat sb;
	ssize_t n;
	int fd, r = VAULT_ERR_KEY;
	uint8_t extra;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		log_error("cannot open %s %s: %s", what, path,
		    strerror(errno));
		return VAULT_ERR_KEY;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		log_error("%s %s is not a regular file", what, path);
		goto out;
	}
	if ((sb.st_mode & 077) != 0) {
		log_error("%s %s has mode %03o; it must be 0600 or stricter",
		    what, path, (unsigned)(sb.st_mode & 0777));
		goto out;
	}
	if (sb.st_uid != geteuid()) {
		log_error("%s %s is not owned by the daemon's user", what,
		    path);
		goto out;
	}
	n = read(fd, key, CRYPTO_KEY_BYTES);
	if (n != CRYPTO_KEY_BYTES || read(fd, &extra, 1) != 0) {
		log_error("%s %s must hold exactly %d bytes", what, path,
		    CRYPTO_KEY_BYTES);
		sodium_memzero(key, CRYPTO_KEY_BYTES);
		goto out;
	}
	r = 0;
out:
	close(fd);
	return r;
}

int
keyring_create_key_file(const char *path)
{
	return keyring_create_secret_file(path, "master key file");
}

int
keyring_create_secret_file(const char *path, const char *what)
{
	uint8_t *key = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	int r;

	if (key == NULL)
		return VAULT_ERR_NOMEM;
	randombytes_buf(key, CRYPTO_KEY_BYTES);
	/* Whole or absent: a crash never leaves a short key file. */
	r = fsutil_write_atomic(path, key, CRYPTO_KEY_BYTES, 0600, 0, "keyfile");
	if (r == VAULT_ERR_EXISTS)
		log_error("cannot create %s %s: it exists", what, path);
	else if (r != 0)
		log_error("cannot create %s %s", what, path);
	crypto_secret_free(key);
	return r == 0 ? 0 : VAULT_ERR_IO;
}

/* master-<version><suffix>: the version, or -1 when name is not one. */
static int
version_from_name(const char *name, const char *suffix, uint32_t *version)
{
	unsigned long v;
	char *end;

	if (strncmp(name, "master-", 7) != 0 || name[7] < '1' || name[7] > '9')
		return -1;
	errno = 0;
	v = strtoul(name + 7, &end, 10);
	if (errno != 0 || strcmp(end, suffix) != 0 || v == 0 || v > UINT32_MAX)
		return -1;
	*version = (uint32_t)v;
	return 0;
}

static void
key_path(const struct keyring *kr, uint32_t version, char *buf, size_t len)
{
	snprintf(buf, len, "%s/master-%u.key", kr->dir, version);
}

static struct master *
find(const struct keyring *kr, uint32_t version)
{
	size_t n = atomic_load_explicit(&kr->n, memory_order_acquire);

	for (size_t i = 0; i < n; i++)
		if (kr->keys[i].version == version)
			return (struct master *)&kr->keys[i];
	return NULL;
}

/* What destroying a version removes: for messages. */
static const char *
material(const struct keyring *kr)
{
	return kr->prov != NULL ? "token object" : "key file";
}

/* A version's 32 bytes: from the provider, or from its file at path. */
static int
read_version(const struct keyring *kr, uint32_t version, const char *path,
    uint8_t *key)
{
	int r;

	if (kr->prov == NULL)
		return keyring_read_key_file(path, key);
	if ((r = keyprov_load(kr->prov, version, key)) == VAULT_ERR_NOT_FOUND)
		log_error("the PKCS#11 token holds no master key version %u",
		    version);
	return r == VAULT_ERR_NOT_FOUND ? VAULT_ERR_KEY : r;
}

/* Appends a loaded key; the entry is published only once complete. */
static int
add_key(struct keyring *kr, uint32_t version, const char *path)
{
	size_t n = atomic_load(&kr->n);
	struct master *m;
	int r;

	if (n == MAX_VERSIONS) {
		log_error("too many master key versions");
		return VAULT_ERR_KEY;
	}
	m = &kr->keys[n];
	if ((m->key = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = read_version(kr, version, path, m->key)) != 0) {
		crypto_secret_free(m->key);
		m->key = NULL;
		return r;
	}
	m->version = version;
	atomic_store(&m->gone, false);
	if (version > kr->highest)
		kr->highest = version;
	atomic_store_explicit(&kr->n, n + 1, memory_order_release);
	return 0;
}

/*
 * Notes a file that did not load. A regular file of ours with a safe mode
 * but the wrong length is broken (a crash, a stray empty file); any other
 * reason (mode, owner, type, unreadable) is the operator's to fix.
 */
static int
note_bad(struct keyring *kr, uint32_t version, const char *path)
{
	struct bad_file *grown;
	struct stat sb;

	if ((grown = reallocarray(kr->bad, kr->n_bad + 1, sizeof(*grown))) == NULL)
		return VAULT_ERR_NOMEM;
	kr->bad = grown;
	kr->bad[kr->n_bad].version = version;
	kr->bad[kr->n_bad].mode = lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    (sb.st_mode & 077) != 0 || sb.st_uid != geteuid() ||
	    sb.st_size == CRYPTO_KEY_BYTES;
	kr->n_bad++;
	return 0;
}

static struct bad_file *
find_bad(const struct keyring *kr, uint32_t version)
{
	for (size_t i = 0; i < kr->n_bad; i++)
		if (kr->bad[i].version == version)
			return &kr->bad[i];
	return NULL;
}

static bool
is_bad(const struct keyring *kr, uint32_t version)
{
	return find_bad(kr, version) != NULL;
}

/*
 * Loads every master-<v>.key. A file that does not load is noted, not
 * fatal: whether it matters depends on the store (open_existing). A
 * master-<v>.key.tmp is a key file a crash left before its rename: never
 * published, never used; it is wiped.
 */
static int
load_key_files(struct keyring *kr)
{
	DIR *d;
	struct dirent *e;
	char path[4096];
	int r = 0;

	if ((d = opendir(kr->dir)) == NULL) {
		log_error("cannot open keys directory %s: %s", kr->dir,
		    strerror(errno));
		return VAULT_ERR_KEY;
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		uint32_t v;

		snprintf(path, sizeof(path), "%s/%s", kr->dir, e->d_name);
		if (version_from_name(e->d_name, ".key" FSUTIL_TMP_SUFFIX, &v) == 0) {
			if (fsutil_wipe(path) != 0)
				log_error("cannot remove %s: %s", path, strerror(errno));
			else
				log_warn("removed %s, a key file an interrupted write "
				    "left unfinished", path);
			continue;
		}
		if (version_from_name(e->d_name, ".key", &v) != 0)
			continue;
		if ((r = add_key(kr, v, path)) == VAULT_ERR_KEY)
			r = note_bad(kr, v, path);
	}
	closedir(d);
	return r;
}

/*
 * Loads every version the token holds. Unlike a file, a token object that
 * does not load is fatal: the token is down or refuses, not a stray file.
 */
static int
load_token_keys(struct keyring *kr)
{
	uint32_t *vs = NULL;
	size_t n;
	int r;

	if ((r = keyprov_versions(kr->prov, &vs, &n)) != 0)
		return r;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = add_key(kr, vs[i], NULL);
	free(vs);
	return r;
}

int
keyring_dir_has_keys(const char *keys_dir, bool *found)
{
	DIR *d;
	struct dirent *e;
	uint32_t v;

	*found = false;
	if ((d = opendir(keys_dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("cannot open keys directory %s: %s", keys_dir,
		    strerror(errno));
		return VAULT_ERR_KEY;
	}
	while (!*found && (e = readdir(d)) != NULL)
		*found = version_from_name(e->d_name, ".key", &v) == 0;
	closedir(d);
	return 0;
}

/*
 * A key file of a version the store never used, which does not load (a
 * crash, a stray empty file): renamed to master-<v>.key.unusable-<time>,
 * so that it neither stops the vault nor is lost.
 */
static void
set_aside(const struct keyring *kr, uint32_t version)
{
	char path[4096], aside[4200];

	snprintf(path, sizeof(path), "%s/master-%u.key", kr->dir, version);
	snprintf(aside, sizeof(aside), "%s.unusable-%lld", path,
	    (long long)time(NULL));
	if (rename(path, aside) != 0 || fsutil_sync_dir(kr->dir) != 0) {
		log_error("cannot set aside %s: %s", path, strerror(errno));
		return;
	}
	log_warn("master key file %s cannot be used (see above) and the store "
	    "never used version %u: set aside as %s", path, version, aside);
}

/*
 * A destroyed version's file, whatever it holds: wiped and removed; or its
 * token object, destroyed.
 */
static int
wipe_key_file(const struct keyring *kr, uint32_t version)
{
	char path[4096];

	if (kr->prov != NULL)
		return keyprov_destroy(kr->prov, version);
	snprintf(path, sizeof(path), "%s/master-%u.key", kr->dir, version);
	if (fsutil_wipe(path) != 0) {
		log_error("cannot wipe and remove %s: %s", path, strerror(errno));
		return VAULT_ERR_IO;
	}
	if (fsutil_sync_dir(kr->dir) != 0) {
		log_error("cannot sync the keys directory %s: %s", kr->dir,
		    strerror(errno));
		return VAULT_ERR_IO;
	}
	return 0;
}

const uint8_t *
keyring_master(const struct keyring *kr, uint32_t version)
{
	const struct master *m = find(kr, version);

	return m == NULL || atomic_load(&m->gone) ? NULL : m->key;
}

uint32_t
keyring_active_version(const struct keyring *kr)
{
	return atomic_load(&kr->active);
}

const uint8_t *
keyring_index_key(const struct keyring *kr)
{
	return kr->vkeys[VK_INDEX];
}

const uint8_t *
keyring_token_root(const struct keyring *kr)
{
	return kr->vkeys[VK_TOKEN];
}

const uint8_t *
keyring_audit_key(const struct keyring *kr)
{
	return kr->vkeys[VK_AUDIT];
}

const uint8_t *
keyring_receipt_public_key(const struct keyring *kr)
{
	return kr->sign_pk;
}

void
keyring_sign(const struct keyring *kr, const uint8_t *msg, size_t len,
    uint8_t sig[KEYRING_SIG_BYTES])
{
	crypto_sign_detached(sig, NULL, msg, len, kr->sign_sk);
}

uint32_t
keyring_next_version(const struct keyring *kr)
{
	return kr->highest + 1;
}

static int
put_kv(struct store_txn *txn, uint32_t version, const uint8_t *key,
    uint8_t state, uint64_t created, uint64_t destroyed)
{
	uint8_t rec[KV_RECORD_BYTES];

	rec[KV_STATE] = state;
	if (key != NULL)
		crypto_key_check_value(key, rec + KV_KCV);
	else
		memset(rec + KV_KCV, 0, CRYPTO_KCV_BYTES);
	store_put_u64(rec + KV_CREATED, created);
	store_put_u64(rec + KV_DESTROYED_AT, destroyed);
	return meta_put(txn, META_KEY_VERSION, version, rec, sizeof(rec));
}

static int
get_kv(struct store_txn *txn, uint32_t version, uint8_t *rec, bool *found)
{
	struct store_val v;
	int rc;

	*found = false;
	if ((rc = meta_get(txn, META_KEY_VERSION, version,
	    &v)) == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (v.len != KV_RECORD_BYTES) {
		log_error("the store's key version records are corrupt");
		return VAULT_ERR_STATE;
	}
	memcpy(rec, v.data, KV_RECORD_BYTES);
	*found = true;
	return 0;
}

static void
kv_decode(uint32_t version, const uint8_t *rec, const struct keyring *kr,
    struct key_version *out)
{
	out->version = version;
	out->destroyed = rec[KV_STATE] != KV_LIVE;
	out->destroy_pending = rec[KV_STATE] == KV_DESTROYING;
	out->loaded = keyring_master(kr, version) != NULL;
	out->created_ms = store_get_u64(rec + KV_CREATED);
	out->destroyed_ms = store_get_u64(rec + KV_DESTROYED_AT);
}

int
keyring_highest_txn(struct store_txn *txn, uint32_t *highest)
{
	uint8_t last[META_KEY_MAX];
	struct store_cursor *cur = NULL;
	struct store_val k = { meta_key_bytes(META_KEY_VERSION, UINT32_MAX,
	    last), last }, v;
	int rc;

	*highest = 0;
	if ((rc = store_cursor_open(txn, STORE_META, &cur)) != 0)
		return rc;
	/* The last record at or before kv/<UINT32_MAX>: the highest version. */
	rc = store_cursor_get(cur, &k, &v, STORE_SEEK);
	if (rc == VAULT_ERR_NOT_FOUND)
		rc = store_cursor_get(cur, &k, &v, STORE_LAST);
	else if (rc == 0 && (k.len != KV_KEY_BYTES ||
	    memcmp(k.data, last, KV_KEY_BYTES) != 0))
		rc = store_cursor_get(cur, &k, &v, STORE_PREV);
	if (rc == 0 && k.len == KV_KEY_BYTES &&
	    memcmp(k.data, last, KV_PREFIX_LEN) == 0)
		*highest = store_get_u32((const uint8_t *)k.data +
		    KV_PREFIX_LEN);
	store_cursor_close(cur);
	return rc == 0 || rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}

/* Seals every vault key under version into meta. */
static int
seal_vault_keys(struct keyring *kr, struct store_txn *txn, uint32_t version)
{
	uint8_t blob[CRYPTO_KEY_BYTES + CRYPTO_OVERHEAD];
	const uint8_t *master = keyring_master(kr, version);
	int r;

	if (master == NULL)
		return VAULT_ERR_KEY;
	for (int i = 0; i < VK_COUNT; i++) {
		if ((r = crypto_seal(master, version, (const uint8_t *)vault_keys[i].ad,
		    strlen(vault_keys[i].ad), kr->vkeys[i], CRYPTO_KEY_BYTES, blob,
		    sizeof(blob))) != 0)
			return r;
		if ((r = meta_put(txn, vault_keys[i].meta, 0, blob,
		    sizeof(blob))) != 0)
			return r;
	}
	return 0;
}

/*
 * Every change of a key version record moves the generation, so that
 * other replicas see it with one meta get per group (keyring_refresh_txn).
 */
static int
bump_gen(struct store_txn *txn)
{
	uint64_t gen;
	int r;

	if ((r = meta_get_u64_or0(txn, META_KEYRING_GEN, 0, &gen)) != 0)
		return r;
	return meta_put_u64(txn, META_KEYRING_GEN, 0, gen + 1);
}

static int
put_active(struct store_txn *txn, uint32_t version)
{
	uint8_t act[4];

	store_put_u32(act, version);
	return meta_put(txn, META_ACTIVE_VERSION, 0, act, sizeof(act));
}

static void
derive_signing_key(struct keyring *kr)
{
	crypto_sign_seed_keypair(kr->sign_pk, kr->sign_sk, kr->vkeys[VK_RECEIPT]);
}

/* First start of a store: record every key, pick the active one, make vault keys. */
static int
init_store(struct keyring *kr, struct store *st)
{
	size_t n = atomic_load(&kr->n);
	uint32_t active = 0;
	struct store_txn *txn = NULL;
	int r;

	for (size_t i = 0; i < n; i++)
		if (kr->keys[i].version > active)
			active = kr->keys[i].version;
	for (int i = 0; i < VK_COUNT; i++)
		randombytes_buf(kr->vkeys[i], CRYPTO_KEY_BYTES);
	if ((r = store_write_begin(st, &txn)) != 0)
		return r;
	/*
	 * Another replica may have made the store since the caller looked:
	 * its vault keys are the vault's, not ours (the writers' lock orders
	 * the two begins; this one sees the other's commit).
	 */
	if ((r = meta_get(txn, META_ACTIVE_VERSION, 0, &(struct store_val){ 0 }))
	    != VAULT_ERR_NOT_FOUND) {
		store_write_abort(txn);
		return r == 0 ? VAULT_ERR_EXISTS : r;
	}
	for (size_t i = 0; i < n; i++)
		if ((r = put_kv(txn, kr->keys[i].version, kr->keys[i].key,
		    KV_LIVE, store_now_ms(), 0)) != 0)
			goto fail;
	if ((r = put_active(txn, active)) != 0 ||
	    (r = seal_vault_keys(kr, txn, active)) != 0)
		goto fail;
	if ((r = store_write_commit(txn)) != 0)
		return r;
	atomic_store(&kr->active, active);
	kr->recorded = kr->highest;
	derive_signing_key(kr);
	log_info("new store: master key version %u is active", active);
	return 0;
fail:
	store_write_abort(txn);
	return r;
}

/* A file of a version the store never recorded: broken ones are set aside. */
static int
check_unrecorded(const struct bad_file *b)
{
	if (!b->mode)
		return 0;
	log_error("master key file master-%u.key cannot be used (see above): "
	    "fix its mode or owner, or remove it", b->version);
	return VAULT_ERR_KEY;
}

/*
 * Every version the store knows must be present (unless destroyed) and
 * match. Files of destroyed versions (or versions being destroyed) are
 * wiped at once, whatever else fails: they must never be used again.
 */
static int
check_versions(struct keyring *kr, struct store_txn *txn)
{
	struct key_version *vs = NULL;
	uint8_t rec[KV_RECORD_BYTES], kcv[CRYPTO_KCV_BYTES];
	size_t n;
	bool found;
	int r;

	if ((r = keyring_versions(kr, txn, &vs, &n)) != 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct master *m = vs[i].destroyed ? find(kr, vs[i].version) : NULL;

		if (m != NULL) {
			sodium_memzero(m->key, CRYPTO_KEY_BYTES);
			atomic_store(&m->gone, true);
		}
		if (vs[i].destroyed && (m != NULL || is_bad(kr, vs[i].version))) {
			if (wipe_key_file(kr, vs[i].version) == 0)
				log_warn("master key version %u was destroyed, but a "
				    "%s for it was present; it was wiped and "
				    "removed", vs[i].version, material(kr));
			else
				log_error("master key version %u was destroyed, but its "
				    "%s cannot be removed: remove it by hand",
				    vs[i].version, material(kr));
		}
	}
	for (size_t i = 0; i < n; i++) {
		const uint8_t *key = keyring_master(kr, vs[i].version);

		if (vs[i].version > kr->highest)
			kr->highest = vs[i].version;
		if (vs[i].version > kr->recorded)
			kr->recorded = vs[i].version;
		if (vs[i].destroyed)
			continue;
		if (key == NULL && is_bad(kr, vs[i].version)) {
			log_error("master key version %u is in use by the store, but "
			    "its key file cannot be used (see above); restore "
			    "master-%u.key from a backup", vs[i].version,
			    vs[i].version);
			r = VAULT_ERR_KEY;
			goto out;
		}
		/* Made since the keys were read (a replica starting with us). */
		if (key == NULL && keyring_load_version(kr, vs[i].version,
		    false) == 0)
			key = keyring_master(kr, vs[i].version);
		if (key == NULL) {
			log_error("master key version %u is missing from the %s; "
			    "the store needs it", vs[i].version, kr->prov != NULL ?
			    "PKCS#11 token" : "keys directory");
			r = VAULT_ERR_KEY;
			goto out;
		}
		if ((r = get_kv(txn, vs[i].version, rec, &found)) != 0)
			goto out;
		crypto_key_check_value(key, kcv);
		if (sodium_memcmp(kcv, rec + KV_KCV, CRYPTO_KCV_BYTES) != 0) {
			log_error("master key %s for version %u does not match the "
			    "store's key check value: wrong %s", material(kr),
			    vs[i].version, kr->prov != NULL ? "token" : "key file");
			r = VAULT_ERR_KEY;
			goto out;
		}
	}
	/* Unusable files of versions the store never recorded. */
	for (size_t i = 0; i < kr->n_bad; i++) {
		struct key_version kv;

		if (kr->bad[i].version == 0 || keyring_version_get(kr, txn,
		    kr->bad[i].version, &kv) != VAULT_ERR_NOT_FOUND) {
			kr->bad[i].version = 0;		/* handled above */
			continue;
		}
		if ((r = check_unrecorded(&kr->bad[i])) != 0)
			goto out;
	}
out:
	free(vs);
	return r;
}

static int
unwrap_vault_key(struct keyring *kr, struct store_txn *txn, int which)
{
	const char *name = meta_name(vault_keys[which].meta);
	const char *ad = vault_keys[which].ad;
	struct store_val v;
	const uint8_t *master;
	uint32_t ver;
	size_t n;
	int rc, r;

	if ((rc = meta_get(txn, vault_keys[which].meta, 0, &v)) != 0) {
		log_error("the store has no %s; it is incomplete or corrupt", name);
		return rc == VAULT_ERR_NOT_FOUND ? VAULT_ERR_STATE : rc;
	}
	if ((r = crypto_blob_version(v.data, v.len, &ver)) != 0 ||
	    (master = keyring_master(kr, ver)) == NULL) {
		log_error("%s is sealed under a master key version that is not "
		    "loaded", name);
		return VAULT_ERR_KEY;
	}
	if ((r = crypto_open(master, (const uint8_t *)ad, strlen(ad), v.data,
	    v.len, kr->vkeys[which], CRYPTO_KEY_BYTES, &n)) != 0 ||
	    n != CRYPTO_KEY_BYTES) {
		log_error("%s does not open under master key version %u: the "
		    "store or key file is corrupt", name, ver);
		return VAULT_ERR_KEY;
	}
	return 0;
}

static int
read_gen(struct keyring *kr, struct store_txn *txn)
{
	uint64_t gen;
	int r;

	if ((r = meta_get_u64_or0(txn, META_KEYRING_GEN, 0, &gen)) == 0)
		atomic_store(&kr->gen, gen);
	return r;
}

static int
open_existing(struct keyring *kr, struct store_txn *txn,
    const struct store_val *active)
{
	int r;

	if (active->len != 4) {
		log_error("the store's active key version record is corrupt");
		return VAULT_ERR_STATE;
	}
	atomic_store(&kr->active, store_get_u32(active->data));
	if ((r = check_versions(kr, txn)) != 0)
		return r;
	if (keyring_master(kr, kr->active) == NULL) {
		log_error("the active master key version %u is not loaded",
		    (unsigned)kr->active);
		return VAULT_ERR_KEY;
	}
	for (int i = 0; i < VK_COUNT; i++)
		if ((r = unwrap_vault_key(kr, txn, i)) != 0)
			return r;
	derive_signing_key(kr);
	return read_gen(kr, txn);
}

int
keyring_open(struct keyring **out, struct store *st, const char *keys_dir,
    bool create)
{
	return keyring_open_provider(out, st, keys_dir, NULL, create);
}

static int create_version(struct keyring *kr, uint32_t version,
    const char *path, bool *created);

/* A new store without keys: version 1 is made, or the start refused. */
static int
first_key(struct keyring *kr, const char *keys_dir, bool create)
{
	char path[4096];
	bool created;
	int r;

	if (!create && kr->prov != NULL) {
		log_error("the PKCS#11 token holds no master key; start once "
		    "with --init to create version 1 on it");
		return VAULT_ERR_KEY;
	}
	if (!create) {
		log_error("no master key in %s; create one with "
		    "'vaultd --gen-key %s/master-1.key'", keys_dir, keys_dir);
		return VAULT_ERR_KEY;
	}
	if (kr->prov == NULL && find_bad(kr, 1) != NULL &&
	    !find_bad(kr, 1)->mode) {
		set_aside(kr, 1);
		find_bad(kr, 1)->version = 0;
	}
	snprintf(path, sizeof(path), "%s/master-1.key", keys_dir);
	/* A replica starting the same new vault may be making it too. */
	if ((r = create_version(kr, 1, path, &created)) != 0)
		return r;
	return add_key(kr, 1, kr->prov != NULL ? NULL : path);
}

int
keyring_open_provider(struct keyring **out, struct store *st,
    const char *keys_dir, struct keyprov *prov, bool create)
{
	struct keyring *kr;
	struct store_txn *txn = NULL;
	struct store_val v;
	int rc, r;

	*out = NULL;
	if ((kr = calloc(1, sizeof(*kr))) == NULL) {
		keyprov_free(prov);
		return VAULT_ERR_NOMEM;
	}
	pthread_mutex_init(&kr->mu, NULL);
	pthread_mutex_init(&kr->refresh_mu, NULL);
	kr->st = st;
	kr->prov = prov;
	if ((kr->dir = strdup(keys_dir)) == NULL ||
	    (kr->sign_sk = crypto_secret_alloc(crypto_sign_SECRETKEYBYTES)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	for (int i = 0; i < VK_COUNT; i++)
		if ((kr->vkeys[i] = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL) {
			r = VAULT_ERR_NOMEM;
			goto out;
		}
	if ((r = kr->prov != NULL ? load_token_keys(kr) : load_key_files(kr)) != 0)
		goto out;
	if ((r = store_read_begin(st, &txn)) != 0)
		goto out;
	rc = meta_get(txn, META_ACTIVE_VERSION, 0, &v);
	if (rc == 0) {
		r = open_existing(kr, txn, &v);
		goto out;
	}
	store_read_end(txn);
	txn = NULL;
	if (rc != VAULT_ERR_NOT_FOUND) {
		r = rc;
		goto out;
	}
	/* A new store: no file is of a version it used. */
	for (size_t i = 0; i < kr->n_bad; i++)
		if ((r = check_unrecorded(&kr->bad[i])) != 0)
			goto out;
	if (atomic_load(&kr->n) == 0 &&
	    (r = first_key(kr, keys_dir, create)) != 0)
		goto out;
	/* Made meanwhile by another replica: open it as it is. */
	if ((r = init_store(kr, st)) == VAULT_ERR_EXISTS &&
	    (r = store_read_begin(st, &txn)) == 0 &&
	    (r = meta_get(txn, META_ACTIVE_VERSION, 0, &v)) == 0)
		r = open_existing(kr, txn, &v);
out:
	if (txn != NULL)
		store_read_end(txn);
	if (r != 0) {
		keyring_free(kr);
		return r;
	}
	/* Only a start that goes on sets files aside: a refused one changes none. */
	for (size_t i = 0; i < kr->n_bad; i++)
		if (kr->bad[i].version != 0)
			set_aside(kr, kr->bad[i].version);
	free(kr->bad);
	kr->bad = NULL;
	kr->n_bad = 0;
	*out = kr;
	return 0;
}

void
keyring_free(struct keyring *kr)
{
	if (kr == NULL)
		return;
	for (size_t i = 0; i < atomic_load(&kr->n); i++)
		crypto_secret_free(kr->keys[i].key);
	for (int i = 0; i < VK_COUNT; i++)
		crypto_secret_free(kr->vkeys[i]);
	crypto_secret_free(kr->sign_sk);
	keyprov_free(kr->prov);
	pthread_mutex_destroy(&kr->mu);
	pthread_mutex_destroy(&kr->refresh_mu);
	free(kr->bad);
	free(kr->dir);
	free(kr);
}

/* Loads a discarded entry's file again; published once complete. */
static int
reload_key(struct keyring *kr, struct master *m, const char *path)
{
	int r;

	if ((r = read_version(kr, m->version, path, m->key)) != 0)
		return r;
	m->discarded = false;
	if (m->version > kr->highest)
		kr->highest = m->version;
	atomic_store(&m->gone, false);
	return 0;
}

/* Creates version's file or token object unless it exists; *created says. */
static int
create_version(struct keyring *kr, uint32_t version, const char *path,
    bool *created)
{
	int r;

	*created = false;
	if (kr->prov != NULL) {
		if ((r = keyprov_create(kr->prov, version)) == VAULT_ERR_EXISTS)
			return 0;
		*created = r == 0;
		return r;
	}
	if (access(path, F_OK) == 0)
		return 0;
	if ((r = keyring_create_key_file(path)) != 0) {
		/*
		 * Replicas share the keys directory: another one starting a
		 * rotation at the same moment may be creating this version's
		 * file (its temporary file made ours fail). The file it
		 * publishes (complete: rename) is the version's key for both.
		 */
		for (int i = 0; i < 40 && access(path, F_OK) != 0; i++) {
			struct timespec ts = { 0, 50 * 1000000L };

			nanosleep(&ts, NULL);
		}
		if (access(path, F_OK) == 0) {
			log_info("master key file %s was made by another replica; "
			    "using it", path);
			return 0;
		}
		return r;
	}
	*created = true;
	return 0;
}

int
keyring_load_version(struct keyring *kr, uint32_t version, bool create)
{
	struct master *m;
	char path[4096];
	bool created = false;
	int r = 0;

	pthread_mutex_lock(&kr->mu);
	if ((m = find(kr, version)) != NULL && !m->discarded) {
		r = keyring_master(kr, version) == NULL ? VAULT_ERR_STATE : 0;
		goto out;
	}
	key_path(kr, version, path, sizeof(path));
	if (create && (r = create_version(kr, version, path, &created)) != 0)
		goto out;
	r = m != NULL ? reload_key(kr, m, path) : add_key(kr, version, path);
	if (r != 0 && created && kr->prov != NULL &&
	    keyprov_destroy(kr->prov, version) != 0)
		log_error("cannot destroy the token object of version %u", version);
	else if (r != 0 && created && kr->prov == NULL && unlink(path) != 0)
		log_error("cannot remove %s: %s", path, strerror(errno));
	if (r == 0)
		find(kr, version)->created = created;
out:
	pthread_mutex_unlock(&kr->mu);
	return r;
}

int
keyring_activate_txn(struct keyring *kr, struct store_txn *txn,
    uint32_t version)
{
	const uint8_t *key = keyring_master(kr, version);
	uint32_t highest;
	int r;

	if (key == NULL)
		return VAULT_ERR_KEY;
	/* Versions only move forward: none the store ever had comes back. */
	if ((r = keyring_highest_txn(txn, &highest)) != 0)
		return r;
	if (version <= highest)
		return VAULT_ERR_STATE;
	if ((r = put_kv(txn, version, key, KV_LIVE, store_now_ms(),
	    0)) != 0)
		return r;
	if ((r = put_active(txn, version)) != 0 ||
	    (r = bump_gen(txn)) != 0)
		return r;
	return seal_vault_keys(kr, txn, version);
}

void
keyring_set_active(struct keyring *kr, uint32_t version)
{
	pthread_mutex_lock(&kr->mu);
	atomic_store(&kr->active, version);
	if (version > kr->highest)
		kr->highest = version;
	if (version > kr->recorded)
		kr->recorded = version;
	pthread_mutex_unlock(&kr->mu);
}

int
keyring_destroy_begin_txn(struct keyring *kr, struct store_txn *txn,
    uint32_t version, bool *already)
{
	uint8_t rec[KV_RECORD_BYTES];
	bool found;
	int r;

	(void)kr;	/* the keyring's own record: no state of kr needed yet */
	*already = false;
	if ((r = get_kv(txn, version, rec, &found)) != 0)
		return r;
	if (!found)
		return VAULT_ERR_NOT_FOUND;
	if (rec[KV_STATE] == KV_DESTROYED)
		return VAULT_ERR_STATE;
	if (rec[KV_STATE] == KV_DESTROYING) {
		*already = true;
		return 0;
	}
	if ((r = bump_gen(txn)) != 0)
		return r;
	return put_kv(txn, version, NULL, KV_DESTROYING,
	    store_get_u64(rec + KV_CREATED), 0);
}

int
keyring_destroy_txn(struct keyring *kr, struct store_txn *txn, uint32_t version,
    uint64_t when_ms)
{
	uint8_t rec[KV_RECORD_BYTES];
	bool found;
	int r;

	(void)kr;
	if ((r = get_kv(txn, version, rec, &found)) != 0)
		return r;
	if (!found)
		return VAULT_ERR_NOT_FOUND;
	/*
	 * Finished already: by the janitor's tick, which finishes pending
	 * destructions, while a call was between its begin and this step.
	 */
	if (rec[KV_STATE] == KV_DESTROYED)
		return 0;
	/* Only after keyring_forget: never "destroyed" with its file on disk. */
	if (rec[KV_STATE] != KV_DESTROYING)
		return VAULT_ERR_STATE;
	if ((r = bump_gen(txn)) != 0)
		return r;
	return put_kv(txn, version, NULL, KV_DESTROYED,
	    store_get_u64(rec + KV_CREATED), when_ms);
}

int
keyring_forget(struct keyring *kr, uint32_t version)
{
	struct master *m;
	char path[4096];
	int r;

	pthread_mutex_lock(&kr->mu);
	if ((m = find(kr, version)) != NULL) {
		atomic_store(&m->gone, true);
		sodium_memzero(m->key, CRYPTO_KEY_BYTES);
	}
	if (kr->prov != NULL) {
		/* Gone from the token: from every copy of the store at once. */
		if ((r = keyprov_destroy(kr->prov, version)) == 0)
			VAULT_CRASH_POINT("destroy.after_unlink");
		goto out;
	}
	key_path(kr, version, path, sizeof(path));
	if ((r = fsutil_wipe(path)) != 0) {
		log_error("cannot wipe and remove %s: %s", path, strerror(errno));
		goto out;
	}
	VAULT_CRASH_POINT("destroy.after_unlink");
	if ((r = fsutil_sync_dir(kr->dir)) != 0)
		log_error("cannot sync the keys directory %s: %s", kr->dir,
		    strerror(errno));
out:
	pthread_mutex_unlock(&kr->mu);
	return r;
}

void
keyring_set_shared(struct keyring *kr, bool shared)
{
	kr->shared = shared;
}

bool
keyring_shared(const struct keyring *kr)
{
	return kr->shared;
}

/* Forgets version, loaded but never recorded, and the file it created. */
int
keyring_discard_version(struct keyring *kr, uint32_t version)
{
	struct master *m;
	uint8_t rec[KV_RECORD_BYTES];
	struct store_txn *txn = NULL;
	bool found;
	int r;

	/*
	 * The snapshot before the lock: readers holding every pooled
	 * connection (PostgreSQL) may be waiting for mu in keyring_master_load.
	 */
	if ((r = store_read_begin(kr->st, &txn)) != 0)
		return r;
	pthread_mutex_lock(&kr->mu);
	if ((m = find(kr, version)) == NULL || m->discarded) {
		r = 0;
		goto out;
	}
	/* Never a key the store knows: its records may need it. */
	if ((r = get_kv(txn, version, rec, &found)) != 0)
		goto out;
	if (found || version == atomic_load(&kr->active)) {
		r = VAULT_ERR_STATE;
		goto out;
	}
	atomic_store(&m->gone, true);
	sodium_memzero(m->key, CRYPTO_KEY_BYTES);
	m->discarded = true;
	/*
	 * Shared by replicas, the key this process created may already be
	 * loaded by another one whose start of the same version is about to
	 * commit: removing it would leave that rotation's keys without their
	 * master. Left in place, an unrecorded version is harmless (it wraps
	 * nothing) and the next rotation to that version uses it.
	 */
	if (m->created && kr->shared)
		log_info("master key version %u was not started; its %s stays for "
		    "the other replicas", version, material(kr));
	else if (m->created && (r = wipe_key_file(kr, version)) != 0)
		log_error("cannot wipe and remove the key file of version %u",
		    version);
	m->created = false;
	kr->highest = kr->recorded;
	for (size_t i = 0; i < atomic_load(&kr->n); i++)
		if (!kr->keys[i].discarded && kr->keys[i].version > kr->highest)
			kr->highest = kr->keys[i].version;
out:
	if (txn != NULL)
		store_read_end(txn);
	pthread_mutex_unlock(&kr->mu);
	return r;
}

int
keyring_versions(const struct keyring *kr, struct store_txn *txn,
    struct key_version **out, size_t *n)
{
	struct key_version *vs = NULL, *grown;
	struct store_cursor *cur = NULL;
	struct store_val k = { KV_PREFIX_LEN, meta_name(META_KEY_VERSION) }, v;
	size_t cap = 0;
	int rc, r = 0;

	*out = NULL;
	*n = 0;
	if ((rc = store_cursor_open(txn, STORE_META, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &v, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_NEXT)) {
		if (k.len != KV_KEY_BYTES ||
		    memcmp(k.data, meta_name(META_KEY_VERSION),
		    KV_PREFIX_LEN) != 0)
			break;
		if (v.len != KV_RECORD_BYTES) {
			log_error("the store's key version records are corrupt");
			r = VAULT_ERR_STATE;
			break;
		}
		if (*n == cap) {
			cap = cap == 0 ? 16 : 2 * cap;
			if ((grown = reallocarray(vs, cap, sizeof(*vs))) == NULL) {
				r = VAULT_ERR_NOMEM;
				break;
			}
			vs = grown;
		}
		kv_decode(store_get_u32((const uint8_t *)k.data +
		    KV_PREFIX_LEN), v.data, kr, &vs[(*n)++]);
	}
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	store_cursor_close(cur);
	if (r != 0) {
		free(vs);
		*n = 0;
		return r;
	}
	*out = vs;
	return 0;
}

int
keyring_version_get(const struct keyring *kr, struct store_txn *txn,
    uint32_t version, struct key_version *out)
{
	uint8_t rec[KV_RECORD_BYTES];
	bool found;
	int r;

	if ((r = get_kv(txn, version, rec, &found)) != 0)
		return r;
	if (!found)
		return VAULT_ERR_NOT_FOUND;
	kv_decode(version, rec, kr, out);
	return 0;
}

/* ------------------------------------------ several replicas, one store */

int
keyring_active_txn(struct store_txn *txn, uint32_t *active)
{
	struct store_val v;
	int r;

	*active = 0;
	if ((r = meta_get(txn, META_ACTIVE_VERSION, 0, &v)) != 0)
		return r;
	if (v.len != 4) {
		log_error("the store's active key version record is corrupt");
		return VAULT_ERR_STATE;
	}
	*active = store_get_u32(v.data);
	return 0;
}

/* Takes back a key that failed its check: it may be loaded again. */
static void
unload(struct keyring *kr, uint32_t version)
{
	struct master *m;

	pthread_mutex_lock(&kr->mu);
	if ((m = find(kr, version)) != NULL) {
		atomic_store(&m->gone, true);
		sodium_memzero(m->key, CRYPTO_KEY_BYTES);
		m->discarded = true;
	}
	pthread_mutex_unlock(&kr->mu);
}

/*
 * Within txn: loads version when the store records it live, and keeps it
 * only when it matches the record's key check value (as a start does).
 * VAULT_ERR_KEY when the store does not record it live, or it does not
 * load or match (the cause logged).
 */
static int
load_recorded(struct keyring *kr, struct store_txn *txn, uint32_t version)
{
	uint8_t rec[KV_RECORD_BYTES], kcv[CRYPTO_KCV_BYTES];
	bool found;
	int r;

	if (keyring_master(kr, version) != NULL)
		return 0;
	if ((r = get_kv(txn, version, rec, &found)) != 0)
		return r;
	if (!found || rec[KV_STATE] != KV_LIVE)
		return VAULT_ERR_KEY;
	if ((r = keyring_load_version(kr, version, false)) != 0)
		return r == VAULT_ERR_STATE ? VAULT_ERR_KEY : r;
	crypto_key_check_value(keyring_master(kr, version), kcv);
	if (sodium_memcmp(kcv, rec + KV_KCV, CRYPTO_KCV_BYTES) != 0) {
		log_error("master key %s for version %u does not match the "
		    "store's key check value: wrong %s", material(kr), version,
		    kr->prov != NULL ? "token" : "key file");
		unload(kr, version);
		return VAULT_ERR_KEY;
	}
	log_info("master key version %u loaded: the store records it, another "
	    "replica made it", version);
	return 0;
}

/*
 * A version the store calls destroyed, or being destroyed: its key leaves
 * memory at once. The replica that destroys it removes its file or token
 * object; a copy in a keys directory of this replica's own is wiped here
 * once the destruction is recorded (not before: the destroying replica
 * wipes the shared file between its two commits).
 */
static void
drop_destroyed(struct keyring *kr, uint32_t version, bool pending)
{
	struct master *m;
	char path[4096];
	bool wiped = false;

	pthread_mutex_lock(&kr->mu);
	if ((m = find(kr, version)) != NULL && !atomic_load(&m->gone)) {
		atomic_store(&m->gone, true);
		sodium_memzero(m->key, CRYPTO_KEY_BYTES);
		wiped = true;
	}
	pthread_mutex_unlock(&kr->mu);
	if (wiped)
		log_info("master key version %u is %s in the store: wiped from "
		    "memory", version, pending ? "being destroyed" : "destroyed");
	if (pending || kr->prov != NULL)
		return;
	key_path(kr, version, path, sizeof(path));
	if (access(path, F_OK) == 0 && wipe_key_file(kr, version) == 0)
		log_warn("master key version %u was destroyed, but a key file "
		    "for it was present here; it was wiped and removed", version);
}

/*
 * The key version records changed: destroyed versions leave memory, live
 * ones not loaded are loaded (a failure is logged, not fatal: only the
 * records under that version are unreadable here until it loads).
 */
static int
refresh_versions(struct keyring *kr, struct store_txn *txn)
{
	struct key_version *vs = NULL;
	size_t n;
	int r;

	if ((r = keyring_versions(kr, txn, &vs, &n)) != 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (vs[i].destroyed)
			drop_destroyed(kr, vs[i].version, vs[i].destroy_pending);
		else if (!vs[i].loaded && load_recorded(kr, txn,
		    vs[i].version) != 0)
			log_warn("master key version %u is live in the store but "
			    "cannot be loaded here (see above)", vs[i].version);
		pthread_mutex_lock(&kr->mu);
		if (vs[i].version > kr->highest)
			kr->highest = vs[i].version;
		if (vs[i].version > kr->recorded)
			kr->recorded = vs[i].version;
		pthread_mutex_unlock(&kr->mu);
	}
	free(vs);
	return 0;
}

int
keyring_refresh_txn(struct keyring *kr, struct store_txn *txn)
{
	uint32_t active;
	uint64_t gen;
	int r;

	if ((r = keyring_active_txn(txn, &active)) != 0 ||
	    (r = meta_get_u64_or0(txn, META_KEYRING_GEN, 0, &gen)) != 0)
		return r;
	/* Both only move forward: an older snapshot has nothing new. */
	if (active <= keyring_active_version(kr) && gen <= atomic_load(&kr->gen))
		return 0;
	pthread_mutex_lock(&kr->refresh_mu);
	if (gen > atomic_load(&kr->gen))
		r = refresh_versions(kr, txn);
	if (r == 0 && active > keyring_active_version(kr)) {
		/* Never a new DEK under a version the store has left. */
		if ((r = load_recorded(kr, txn, active)) != 0) {
			log_error("master key version %u is active in the store, but "
			    "it cannot be loaded here (see above): writes fail until "
			    "it can", active);
		} else {
			keyring_set_active(kr, active);
			log_info("master key version %u is active: the store says so "
			    "(another replica, or this one's rotation, activated it)",
			    active);
		}
	}
	if (r == 0 && gen > atomic_load(&kr->gen))
		atomic_store(&kr->gen, gen);
	pthread_mutex_unlock(&kr->refresh_mu);
	return r;
}

int
keyring_refresh(struct keyring *kr)
{
	struct store_txn *txn;
	int r;

	if ((r = store_read_begin(kr->st, &txn)) != 0)
		return r;
	r = keyring_refresh_txn(kr, txn);
	store_read_end(txn);
	return r;
}

int
keyring_master_load(const struct keyring *ckr, struct store_txn *txn,
    uint32_t version, const uint8_t **key)
{
	/* Loading only appends to the table, which readers share safely. */
	struct keyring *kr = (struct keyring *)ckr;
	uint64_t gen;
	int r;

	if ((*key = keyring_master(kr, version)) != NULL || version == 0)
		return 0;
	if ((r = meta_get_u64_or0(txn, META_KEYRING_GEN, 0, &gen)) != 0)
		return r;
	/*
	 * Not from a snapshot older than what this process has seen: there
	 * version may still look live while another replica destroys it.
	 */
	if (gen < atomic_load(&kr->gen)) {
		log_debug("a snapshot older than the keyring meets master key "
		    "version %u, not loaded here: the call is to be retried",
		    version);
		return VAULT_ERR_UNAVAILABLE;
	}
	pthread_mutex_lock(&kr->refresh_mu);
	if (load_recorded(kr, txn, version) != 0)
		log_debug("master key version %u is not live in the store, or "
		    "does not load", version);
	pthread_mutex_unlock(&kr->refresh_mu);
	*key = keyring_master(kr, version);
	return 0;
}
