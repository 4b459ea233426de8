#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keyring.h"
#include "log.h"

#define MAX_VERSIONS 1024
#define KV_PREFIX "kv/"			/* kv/<be32 version> -> key version record */
#define KV_RECORD_BYTES (1 + CRYPTO_KCV_BYTES + 8)
#define KV_LIVE 0
#define KV_DESTROYED 1

static const char active_key[] = "active_version";

/* Keys the master key wraps: stored in meta under name, sealed with ad. */
enum { VK_INDEX, VK_TOKEN, VK_COUNT };
static const struct { const char *name, *ad; } vault_keys[VK_COUNT] = {
	[VK_INDEX] = { "vault_key/index", "vault-key|index" },
	[VK_TOKEN] = { "vault_key/token", "vault-key|token" },
};

struct master {
	uint32_t version;
	uint8_t *key;		/* locked */
};

struct keyring {
	struct master keys[MAX_VERSIONS];
	size_t n;
	uint32_t active;
	uint8_t *vkeys[VK_COUNT];	/* locked */
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
	int fd = -1, r = VAULT_ERR_IO;

	if (key == NULL)
		return VAULT_ERR_NOMEM;
	randombytes_buf(key, CRYPTO_KEY_BYTES);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		log_error("cannot create %s %s: %s", what, path,
		    strerror(errno));
		goto out;
	}
	if (write(fd, key, CRYPTO_KEY_BYTES) != CRYPTO_KEY_BYTES || fsync(fd) != 0) {
		log_error("cannot write %s %s: %s", what, path,
		    strerror(errno));
		unlink(path);
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	crypto_secret_free(key);
	return r;
}

static int
version_from_name(const char *name, uint32_t *version)
{
	unsigned long v;
	char *end;

	if (strncmp(name, "master-", 7) != 0 || name[7] < '1' || name[7] > '9')
		return -1;
	errno = 0;
	v = strtoul(name + 7, &end, 10);
	if (errno != 0 || strcmp(end, ".key") != 0 || v == 0 || v > UINT32_MAX)
		return -1;
	*version = (uint32_t)v;
	return 0;
}

static int
load_key_files(struct keyring *kr, const char *dir)
{
	DIR *d;
	struct dirent *e;
	char path[4096];
	int r = 0;

	if ((d = opendir(dir)) == NULL) {
		log_error("cannot open keys directory %s: %s", dir, strerror(errno));
		return VAULT_ERR_KEY;
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		uint32_t v;

		if (version_from_name(e->d_name, &v) != 0)
			continue;
		if (kr->n == MAX_VERSIONS) {
			log_error("too many master key files in %s", dir);
			r = VAULT_ERR_KEY;
			break;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((kr->keys[kr->n].key = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL) {
			r = VAULT_ERR_NOMEM;
			break;
		}
		kr->keys[kr->n].version = v;
		kr->n++;
		r = keyring_read_key_file(path, kr->keys[kr->n - 1].key);
	}
	closedir(d);
	return r;
}

const uint8_t *
keyring_master(const struct keyring *kr, uint32_t version)
{
	for (size_t i = 0; i < kr->n; i++)
		if (kr->keys[i].version == version)
			return kr->keys[i].key;
	return NULL;
}

uint32_t
keyring_active_version(const struct keyring *kr)
{
	return kr->active;
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

static void
kv_key(uint8_t buf[sizeof(KV_PREFIX) - 1 + 4], uint32_t version)
{
	memcpy(buf, KV_PREFIX, sizeof(KV_PREFIX) - 1);
	store_put_u32(buf + sizeof(KV_PREFIX) - 1, version);
}

/* First start of a store: record every key, pick the active one, make vault keys. */
static int
init_store(struct keyring *kr, struct store *st)
{
	uint8_t kk[sizeof(KV_PREFIX) - 1 + 4], rec[KV_RECORD_BYTES], act[4];
	uint8_t blob[CRYPTO_KEY_BYTES + CRYPTO_OVERHEAD];
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int rc, r;

	for (size_t i = 0; i < kr->n; i++)
		if (kr->keys[i].version > kr->active)
			kr->active = kr->keys[i].version;
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0)
		return store_err(st, rc, "begin keyring init");
	for (size_t i = 0; i < kr->n; i++) {
		rec[0] = KV_LIVE;
		crypto_key_check_value(kr->keys[i].key, rec + 1);
		store_put_u64(rec + 1 + CRYPTO_KCV_BYTES, store_now_ms());
		kv_key(kk, kr->keys[i].version);
		k = (MDB_val){ sizeof(kk), kk };
		v = (MDB_val){ sizeof(rec), rec };
		if ((rc = mdb_put(txn, st->meta, &k, &v, 0)) != 0)
			goto fail;
	}
	store_put_u32(act, kr->active);
	k = (MDB_val){ sizeof(active_key) - 1, (void *)active_key };
	v = (MDB_val){ sizeof(act), act };
	if ((rc = mdb_put(txn, st->meta, &k, &v, 0)) != 0)
		goto fail;
	for (int i = 0; i < VK_COUNT; i++) {
		randombytes_buf(kr->vkeys[i], CRYPTO_KEY_BYTES);
		if ((r = crypto_seal(keyring_master(kr, kr->active), kr->active,
		    (const uint8_t *)vault_keys[i].ad, strlen(vault_keys[i].ad),
		    kr->vkeys[i], CRYPTO_KEY_BYTES, blob, sizeof(blob))) != 0) {
			mdb_txn_abort(txn);
			return r;
		}
		k = (MDB_val){ strlen(vault_keys[i].name), (void *)vault_keys[i].name };
		v = (MDB_val){ sizeof(blob), blob };
		if ((rc = mdb_put(txn, st->meta, &k, &v, 0)) != 0)
			goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return store_err(st, rc, "commit keyring init");
	log_info("new store: master key version %u is active", kr->active);
	return 0;
fail:
	mdb_txn_abort(txn);
	return store_err(st, rc, "keyring init");
}

/* Every version the store knows must be present (unless destroyed) and match. */
static int
check_versions(struct keyring *kr, MDB_txn *txn, struct store *st)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { sizeof(KV_PREFIX) - 1, (void *)KV_PREFIX }, v;
	uint8_t kcv[CRYPTO_KCV_BYTES];
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, st->meta, &cur)) != 0)
		return store_err(st, rc, "open cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *rec = v.mv_data;
		const uint8_t *key;
		uint32_t ver;

		if (k.mv_size != sizeof(KV_PREFIX) - 1 + 4 ||
		    memcmp(k.mv_data, KV_PREFIX, sizeof(KV_PREFIX) - 1) != 0)
			break;
		if (v.mv_size != KV_RECORD_BYTES) {
			log_error("the store's key version records are corrupt");
			r = VAULT_ERR_STATE;
			break;
		}
		ver = store_get_u32((const uint8_t *)k.mv_data + sizeof(KV_PREFIX) - 1);
		key = keyring_master(kr, ver);
		if (rec[0] == KV_DESTROYED)
			continue;
		if (key == NULL) {
			log_error("master key version %u is missing from the keys "
			    "directory; the store needs it", ver);
			r = VAULT_ERR_KEY;
			break;
		}
		crypto_key_check_value(key, kcv);
		if (sodium_memcmp(kcv, rec + 1, CRYPTO_KCV_BYTES) != 0) {
			log_error("master key file for version %u does not match the "
			    "store's key check value: wrong key file", ver);
			r = VAULT_ERR_KEY;
			break;
		}
	}
	if (r == 0 && rc != 0 && rc != MDB_NOTFOUND)
		r = store_err(st, rc, "read key versions");
	mdb_cursor_close(cur);
	return r;
}

static int
unwrap_vault_key(struct keyring *kr, MDB_txn *txn, struct store *st, int which)
{
	const char *name = vault_keys[which].name, *ad = vault_keys[which].ad;
	MDB_val k = { strlen(name), (void *)name }, v;
	const uint8_t *master;
	uint32_t ver;
	size_t n;
	int rc, r;

	if ((rc = mdb_get(txn, st->meta, &k, &v)) != 0) {
		log_error("the store has no %s; it is incomplete or corrupt", name);
		return rc == MDB_NOTFOUND ? VAULT_ERR_STATE : store_err(st, rc, "get");
	}
	if ((r = crypto_blob_version(v.mv_data, v.mv_size, &ver)) != 0 ||
	    (master = keyring_master(kr, ver)) == NULL) {
		log_error("%s is sealed under a master key version that is not "
		    "loaded", name);
		return VAULT_ERR_KEY;
	}
	if ((r = crypto_open(master, (const uint8_t *)ad, strlen(ad), v.mv_data,
	    v.mv_size, kr->vkeys[which], CRYPTO_KEY_BYTES, &n)) != 0 ||
	    n != CRYPTO_KEY_BYTES) {
		log_error("%s does not open under master key version %u: the "
		    "store or key file is corrupt", name, ver);
		return VAULT_ERR_KEY;
	}
	return 0;
}

static int
open_existing(struct keyring *kr, struct store *st, MDB_txn *txn,
    const MDB_val *active)
{
	int r;

	if (active->mv_size != 4) {
		log_error("the store's active key version record is corrupt");
		return VAULT_ERR_STATE;
	}
	kr->active = store_get_u32(active->mv_data);
	if ((r = check_versions(kr, txn, st)) != 0)
		return r;
	if (keyring_master(kr, kr->active) == NULL) {
		log_error("the active master key version %u is not loaded",
		    kr->active);
		return VAULT_ERR_KEY;
	}
	for (int i = 0; i < VK_COUNT; i++)
		if ((r = unwrap_vault_key(kr, txn, st, i)) != 0)
			return r;
	return 0;
}

int
keyring_open(struct keyring **out, struct store *st, const char *keys_dir,
    bool create)
{
	struct keyring *kr;
	MDB_txn *txn = NULL;
	MDB_val k = { sizeof(active_key) - 1, (void *)active_key }, v;
	char path[4096];
	int rc, r;

	*out = NULL;
	if ((kr = calloc(1, sizeof(*kr))) == NULL)
		return VAULT_ERR_NOMEM;
	for (int i = 0; i < VK_COUNT; i++)
		if ((kr->vkeys[i] = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL) {
			r = VAULT_ERR_NOMEM;
			goto out;
		}
	if ((r = load_key_files(kr, keys_dir)) != 0)
		goto out;
	if ((r = store_read_begin(st, &txn)) != 0)
		goto out;
	rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == 0) {
		r = open_existing(kr, st, txn, &v);
		goto out;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	if (rc != MDB_NOTFOUND) {
		r = store_err(st, rc, "read active version");
		goto out;
	}
	if (kr->n == 0) {
		if (!create) {
			log_error("no master key in %s; create one with "
			    "'vaultd --gen-key %s/master-1.key'", keys_dir, keys_dir);
			r = VAULT_ERR_KEY;
			goto out;
		}
		snprintf(path, sizeof(path), "%s/master-1.key", keys_dir);
		if ((r = keyring_create_key_file(path)) != 0 ||
		    (r = load_key_files(kr, keys_dir)) != 0)
			goto out;
	}
	r = init_store(kr, st);
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (r != 0) {
		keyring_free(kr);
		return r;
	}
	*out = kr;
	return 0;
}

void
keyring_free(struct keyring *kr)
{
	if (kr == NULL)
		return;
	for (size_t i = 0; i < kr->n; i++)
		crypto_secret_free(kr->keys[i].key);
	for (int i = 0; i < VK_COUNT; i++)
		crypto_secret_free(kr->vkeys[i]);
	free(kr);
}
