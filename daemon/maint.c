#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "backupfile.h"
#include "crypto/crypto.h"
#include "crypto/keyprov.h"
#include "crypto/keyring.h"
#include "engine/backup.h"
#include "engine/deletion.h"
#include "engine/dellog.h"
#include "engine/vault.h"
#include "maint.h"
#include "store/copy.h"
#include "store/migrate.h"
#include "util/fsutil.h"
#include "util/log.h"

#define REPLAY_BATCH 256

static int
open_regular(const char *path, const char *what, int *fd, off_t *size)
{
	struct stat sb;

	if ((*fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		log_error("cannot open the %s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (fstat(*fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		log_error("the %s %s is not a regular file", what, path);
		close(*fd);
		*fd = -1;
		return -1;
	}
	*size = sb.st_size;
	return 0;
}

static int
read_manifest(const char *path, struct backupfile_manifest *m)
{
	char buf[MAINT_BACKUP_HEADER + 1];
	off_t size;
	int fd, r = -1;

	memset(m, 0, sizeof(*m));
	if (open_regular(path, "backup", &fd, &size) != 0)
		return -1;
	if (pread(fd, buf, MAINT_BACKUP_HEADER, 0) != MAINT_BACKUP_HEADER ||
	    backupfile_manifest_parse(buf, MAINT_BACKUP_HEADER, m) != 0) {
		log_error("%s is not a vaultd backup (no valid, signed manifest); "
		    "nothing was restored", path);
		goto out;
	}
	if ((uint64_t)size != MAINT_BACKUP_HEADER + m->data_bytes) {
		log_error("the backup %s is %lld bytes, its manifest says %llu: "
		    "it was cut or appended to; nothing was restored", path,
		    (long long)size, (unsigned long long)(MAINT_BACKUP_HEADER +
		    m->data_bytes));
		goto out;
	}
	r = 0;
out:
	close(fd);
	return r;
}

/* The whole export in memory (its lines are short: 84 bytes a deletion). */
static int
read_export(const char *path, struct backupfile_export *e)
{
	char *data = NULL;
	size_t line = 0, got = 0;
	off_t size;
	ssize_t n;
	int fd, r = -1;

	memset(e, 0, sizeof(*e));
	if (open_regular(path, "deletion export", &fd, &size) != 0)
		return -1;
	if ((data = malloc((size_t)size + 1)) == NULL)
		goto out;
	while (got < (size_t)size &&
	    (n = pread(fd, data + got, (size_t)size - got, (off_t)got)) > 0)
		got += (size_t)n;
	if (got != (size_t)size) {
		log_error("cannot read the deletion export %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if ((r = backupfile_export_parse(data, got, e, &line)) != 0) {
		if (line > 0)
			log_error("the deletion export %s is damaged at line %zu; "
			    "nothing was restored", path, line);
		else if (e->n != e->count && e->count != 0)
			log_error("the deletion export %s lists %zu deletions, its "
			    "header says %llu: it was cut; nothing was restored",
			    path, e->n, (unsigned long long)e->count);
		else
			log_error("%s is not a signed vaultd deletion export; "
			    "nothing was restored", path);
	}
out:
	free(data);
	close(fd);
	return r;
}

/* An absent store directory, or an empty one. */
static int
check_store_dir(const char *dir)
{
	struct dirent *de;
	DIR *d;
	int r = 0;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_error("cannot read the store directory %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			log_error("the store directory %s is not empty: a restore "
			    "never overwrites a store; restore into a new data "
			    "directory, or move this one aside; nothing was "
			    "restored", dir);
			r = -1;
			break;
		}
	closedir(d);
	return r;
}

/* Whether the token holds version (vs: its versions, n of them). */
static bool
token_has(const uint32_t *vs, size_t n, uint32_t version)
{
	for (size_t i = 0; i < n; i++)
		if (vs[i] == version)
			return true;
	return false;
}

/*
 * With key_provider = "pkcs11": the versions the backup needs must be on
 * the token; none of them is a shredded backup.
 */
static int
check_token_keys(const struct backupfile_manifest *m, struct keyprov *prov)
{
	char missing[512] = "";
	uint32_t *vs = NULL;
	size_t n, have = 0, len = 0;

	if (keyprov_versions(prov, &vs, &n) != 0)
		return -1;
	for (size_t i = 0; i < m->n_versions; i++) {
		if (token_has(vs, n, m->versions[i]))
			have++;
		else if (len < sizeof(missing) - 16)
			len += (size_t)snprintf(missing + len, sizeof(missing) - len,
			    "%s%u", len ? ", " : "", m->versions[i]);
	}
	free(vs);
	if (have == 0) {
		log_error("this backup is crypto-shredded: every master key "
		    "version it needs (%s) has been destroyed or is not on the "
		    "PKCS#11 token. By design it can never be restored; restore "
		    "a newer backup", missing);
		return -1;
	}
	if (have < m->n_versions) {
		log_error("this backup needs master key version(s) %s, which are "
		    "not on the PKCS#11 token (a destroyed version cannot come "
		    "back: restore a newer backup); nothing was restored",
		    missing);
		return -1;
	}
	return 0;
}

/* The key files of the versions the backup needs: all gone is a shredded backup. */
static int
check_keys(const struct backupfile_manifest *m, const char *keys_dir,
    struct keyprov *prov)
{
	char path[4096], missing[512] = "";
	size_t have = 0, len = 0;
	bool any = true;

	if (prov != NULL)
		return check_token_keys(m, prov);
	for (size_t i = 0; i < m->n_versions; i++) {
		snprintf(path, sizeof(path), "%s/master-%u.key", keys_dir,
		    m->versions[i]);
		if (access(path, F_OK) == 0)
			have++;
		else if (len < sizeof(missing) - 16)
			len += (size_t)snprintf(missing + len, sizeof(missing) - len,
			    "%s%u", len ? ", " : "", m->versions[i]);
	}
	if (have == 0 && keyring_dir_has_keys(keys_dir, &any) == 0 && !any) {
		log_error("the keys directory %s holds no master key file: copy "
		    "the vault's master-N.key files (version(s) %s) into it "
		    "first; nothing was restored", keys_dir, missing);
		return -1;
	}
	if (have == 0) {
		log_error("this backup is crypto-shredded: every master key "
		    "version it needs (%s) has been destroyed or is not in %s. "
		    "By design it can never be restored; restore a newer backup",
		    missing, keys_dir);
		return -1;
	}
	if (have < m->n_versions) {
		log_error("this backup needs master key version(s) %s, which are "
		    "not in %s: copy master-N.key for each into it (a destroyed "
		    "version cannot come back: then restore a newer backup); "
		    "nothing was restored", missing, keys_dir);
		return -1;
	}
	return 0;
}

/*
 * The manifest as the vault signed it (engine/backup.h). vault_id is only
 * a claim here: restore_into checks that the copy's receipt key is it.
 */
static int
check_manifest_signature(const struct backupfile_manifest *m)
{
	struct backup_manifest bm;
	uint8_t msg[BACKUP_SIG_MSG_BYTES];

	memset(&bm, 0, sizeof(bm));
	bm.created_ms = m->created_ms;
	bm.store_format = m->store_format;
	bm.deletion_seq = m->deletion_seq;
	memcpy(bm.versions, m->versions, sizeof(bm.versions));
	bm.n_versions = m->n_versions;
	memcpy(bm.vault_id, m->vault_id, sizeof(bm.vault_id));
	memcpy(bm.incarnation, m->incarnation, sizeof(bm.incarnation));
	bm.bytes = m->data_bytes;
	memcpy(bm.hash, m->hash, sizeof(bm.hash));
	backup_manifest_message(&bm, msg);
	if (backup_verify(msg, m->sig, m->vault_id) != 0) {
		log_error("the backup's manifest does not match its signature: it "
		    "was edited after the backup (or is not this vault's); "
		    "nothing was restored");
		return -1;
	}
	return 0;
}

/*
 * The export as the vault signed it, and a chain with no gap: each seq the
 * one after the last, from the first the log still held after after_seq.
 */
static int
check_export_signature(const struct backupfile_export *e)
{
	struct backup_export_digest d;
	uint8_t msg[BACKUP_SIG_MSG_BYTES];
	uint64_t want = (e->after_seq > e->expired_through ? e->after_seq :
	    e->expired_through) + 1;

	backup_export_begin(&d, e->vault_id, e->incarnation, e->after_seq);
	for (size_t i = 0; i < e->n; i++)
		backup_export_add(&d, e->d[i].seq, e->d[i].ref, e->d[i].at_ms);
	backup_export_message(&d, e->expired_through, msg);
	if (backup_verify(msg, e->sig, e->vault_id) != 0) {
		log_error("the deletion export does not match its signature: a "
		    "line was dropped, changed or added, or it is not this "
		    "vault's; take a new export; nothing was restored");
		return -1;
	}
	/*
	 * The first may be at or before want: retention can move on between
	 * the export's batches, after the first was read.
	 */
	if (e->n > 0 && e->d[0].seq > e->after_seq && e->d[0].seq < want)
		want = e->d[0].seq;
	for (size_t i = 0; i < e->n; i++, want++)
		if (e->d[i].seq != want) {
			log_error("the deletion export skips from deletion %llu to "
			    "%llu; nothing was restored",
			    (unsigned long long)(want - 1),
			    (unsigned long long)e->d[i].seq);
			return -1;
		}
	return 0;
}

static int
check_export(const struct backupfile_manifest *m,
    const struct backupfile_export *e)
{
	if (sodium_memcmp(m->vault_id, e->vault_id, sizeof(m->vault_id)) != 0) {
		log_error("the deletion export is of another vault than the "
		    "backup (vault_id differs); nothing was restored");
		return -1;
	}
	if (check_export_signature(e) != 0)
		return -1;
	if (sodium_memcmp(m->incarnation, e->incarnation,
	    sizeof(m->incarnation)) != 0) {
		log_error("the deletion export is of another incarnation of this "
		    "vault than the backup (a restored copy or a clone: after the "
		    "backup, their deletion numbers mean other deletions); take "
		    "the export from the vault the backup was taken of; nothing "
		    "was restored");
		return -1;
	}
	/* Retention dropped deletions the backup may still hold. */
	if (e->expired_through >= m->deletion_seq) {
		log_error("the deletion log's retention dropped deletions through "
		    "%llu, and the backup needs every deletion from %llu on: it is "
		    "older than the deletions kept (request_retention_s) and "
		    "would bring deleted consumers back; restore a newer backup; "
		    "nothing was restored", (unsigned long long)e->expired_through,
		    (unsigned long long)m->deletion_seq);
		return -1;
	}
	/* It must hold every deletion from the backup's sequence on. */
	if (e->after_seq >= m->deletion_seq) {
		log_error("the deletion export starts after deletion %llu, but the "
		    "backup needs every deletion from %llu on: take a new export "
		    "(vaultctl deletions export --after %llu); nothing was "
		    "restored", (unsigned long long)e->after_seq,
		    (unsigned long long)m->deletion_seq,
		    (unsigned long long)(m->deletion_seq > 0 ?
		    m->deletion_seq - 1 : 0));
		return -1;
	}
	return 0;
}

static int
check_all(const char *backup, const char *deletions, const char *store_dir,
    const char *keys_dir, struct keyprov *prov, struct backupfile_manifest *m,
    struct backupfile_export *e)
{
	if (read_manifest(backup, m) != 0 || check_manifest_signature(m) != 0)
		return -1;
	if (m->store_format != STORE_FORMAT_VERSION) {
		log_error("the backup is of store format %u; this vaultd reads "
		    "%u..%u; restore it with the vaultd that made it, then run "
		    "vaultd --migrate", m->store_format, STORE_FORMAT_VERSION,
		    STORE_FORMAT_VERSION);
		return -1;
	}
	if (deletions != NULL && (read_export(deletions, e) != 0 ||
	    check_export(m, e) != 0))
		return -1;
	if (check_store_dir(store_dir) != 0 ||
	    check_keys(m, keys_dir, prov) != 0)
		return -1;
	return 0;
}

int
maint_restore_check(const char *backup, const char *deletions,
    const char *store_dir, const char *keys_dir)
{
	struct backupfile_manifest m;
	struct backupfile_export e;
	int r;

	memset(&e, 0, sizeof(e));
	r = check_all(backup, deletions, store_dir, keys_dir, NULL, &m, &e);
	backupfile_export_free(&e);
	return r == 0 ? 0 : 1;
}

/* The backup's data into dir/data.mdb (0600), checked against its hash. */
static int
copy_data(const char *backup, const struct backupfile_manifest *m,
    const char *dir)
{
	uint8_t *buf = NULL, hash[BACKUP_HASH_BYTES];
	crypto_generichash_state h;
	char path[4200];
	uint64_t left = m->data_bytes;
	off_t size, off = MAINT_BACKUP_HEADER;
	int in = -1, out = -1, r = -1;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (open_regular(backup, "backup", &in, &size) != 0 ||
	    (buf = malloc(BACKUP_CHUNK_BYTES)) == NULL)
		goto out;
	if ((out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) < 0) {
		log_error("cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	crypto_generichash_init(&h, NULL, 0, sizeof(hash));
	while (left > 0) {
		size_t want = left < BACKUP_CHUNK_BYTES ? (size_t)left :
		    BACKUP_CHUNK_BYTES;
		ssize_t n = pread(in, buf, want, off);

		if (n <= 0 || write(out, buf, (size_t)n) != n) {
			log_error("cannot copy the backup's data: %s",
			    n < 0 || errno ? strerror(errno) : "short read");
			goto out;
		}
		crypto_generichash_update(&h, buf, (size_t)n);
		off += n;
		left -= (uint64_t)n;
	}
	crypto_generichash_final(&h, hash, sizeof(hash));
	if (sodium_memcmp(hash, m->hash, sizeof(hash)) != 0) {
		log_error("the backup's data does not match its manifest's hash: "
		    "it is damaged; nothing was restored");
		goto out;
	}
	if (fsync(out) != 0) {
		log_error("cannot sync %s: %s", path, strerror(errno));
		goto out;
	}
	r = 0;
out:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	free(buf);
	return r;
}

static int
audit_restore(struct vault *v, const char *detail, const uint8_t *ref,
    const char *outcome)
{
	struct audit_rec rec = { .principal = "vaultd --restore",
	    .method = "restore", .ref = ref, .detail = detail,
	    .outcome = outcome };

	return audit_append(&v->audit, &rec);
}

struct audit_job {
	struct vault *v;
	const struct backupfile_deletion *d;
	const struct receipt *rc;
	size_t n;
};

/* A batch's audit entries in one durable commit (not one each). */
static int
audit_batch_apply(struct store_txn *txn, void *arg)
{
	struct audit_job *job = arg;
	char detail[96];
	int r = 0;

	for (size_t i = 0; i < job->n && r == 0; i++) {
		struct audit_rec rec = { .principal = "vaultd --restore",
		    .method = "restore", .ref = job->d[i].ref, .detail = detail,
		    .outcome = job->rc[i].found ? "ok" : "not_found" };

		snprintf(detail, sizeof(detail), "deletion %" PRIu64 " of %" PRIu64
		    " ms applied again after a restore", job->d[i].seq,
		    job->d[i].at_ms);
		r = audit_append_txn(&job->v->audit, txn, &rec);
	}
	return r;
}

/* One batch of deletions applied again, each with its audit entry. */
static int
replay_batch(struct vault *v, const struct backupfile_deletion *d, size_t n,
    size_t *found)
{
	struct deletion_request req[REPLAY_BATCH];
	struct receipt rc[REPLAY_BATCH];
	struct audit_job job = { v, d, rc, n };
	char ids[REPLAY_BATCH][48];
	size_t bad = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		snprintf(ids[i], sizeof(ids[i]), "restore-replay-%" PRIu64,
		    d[i].seq);
		req[i] = (struct deletion_request){ d[i].ref, ids[i] };
	}
	if ((r = deletion_run(v, req, n, rc, &bad)) != 0) {
		log_error("re-applying deletion %" PRIu64 " failed: %s",
		    d[bad].seq, vault_strerror(r));
		return r;
	}
	for (size_t i = 0; i < n; i++)
		*found += rc[i].found;
	r = writer_submit(v->wr, audit_batch_apply, &job);
	for (size_t i = 0; i < n; i++)
		receipt_clear(&rc[i]);
	return r;
}

static int
replay(struct vault *v, const struct backupfile_manifest *m,
    const struct backupfile_export *e,
    size_t *applied, size_t *found)
{
	size_t i = 0;
	int r;

	*applied = *found = 0;
	while (i < e->n && e->d[i].seq < m->deletion_seq)
		i++;		/* in the backup already */
	while (i < e->n) {
		size_t n = e->n - i < REPLAY_BATCH ? e->n - i : REPLAY_BATCH;

		if ((r = replay_batch(v, &e->d[i], n, found)) != 0)
			return r;
		*applied += n;
		i += n;
	}
	return 0;
}

/* Opens the copy in tmp, re-applies the deletions, audits the restore. */
static int
restore_into(const struct config *cfg, const char *tmp,
    const struct backupfile_manifest *m,
    const struct backupfile_export *e)
{
	struct config c = *cfg;
	struct vault *v = NULL;
	char detail[200];
	size_t applied = 0, found = 0;
	int r;

	c.store_dir = (char *)tmp;
	if ((r = vault_open(&v, &c, VAULT_OPEN_EXISTING)) != 0) {
		log_error("the restored copy does not open (see above)");
		return r;
	}
	/* The signatures were made by vault_id: it must be this copy's key. */
	if (sodium_memcmp(keyring_receipt_public_key(v->kr), m->vault_id,
	    KEYRING_PK_BYTES) != 0) {
		log_error("the backup's data is of another vault than its "
		    "manifest names (the receipt keys differ); nothing was "
		    "restored");
		r = VAULT_ERR_STATE;
		goto out;
	}
	snprintf(detail, sizeof(detail), "restored from a backup of %" PRIu64
	    " ms (deletion seq %" PRIu64 "); %zu later deletion(s) in the "
	    "export", m->created_ms, m->deletion_seq, e->n);
	if ((r = audit_restore(v, detail, NULL, "ok")) != 0 ||
	    (r = replay(v, m, e, &applied, &found)) != 0)
		goto out;
	/* A new history from here: the lost store's exports no longer fit. */
	if ((r = dellog_new_incarnation(v)) != 0) {
		log_error("cannot record the restored store's incarnation: %s",
		    vault_strerror(r));
		goto out;
	}
	log_info("re-applied %zu deletion(s) made after the backup (%zu "
	    "consumer(s) were in it)", applied, found);
out:
	vault_close(v);
	return r;
}

/* A new directory beside store_dir, for the restore to be made in. */
static int
make_tmp(const char *store_dir, char *tmp, size_t len)
{
	if ((size_t)snprintf(tmp, len, "%s.restore-XXXXXX", store_dir) >= len ||
	    mkdtemp(tmp) == NULL) {
		log_error("cannot create a directory beside %s: %s", store_dir,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static void
remove_tmp(const char *tmp)
{
	static const char *const files[] = { "data.mdb", "lock.mdb", NULL };
	char p[4200];
	struct dirent *de;
	DIR *d;

	for (size_t i = 0; files[i] != NULL; i++) {
		snprintf(p, sizeof(p), "%s/%s", tmp, files[i]);
		if (fsutil_wipe(p) != 0)
			log_error("cannot remove %s", p);
	}
	/* The audit journal's files, if the open got that far. */
	if ((d = opendir(tmp)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.') {
				snprintf(p, sizeof(p), "%s/%s", tmp, de->d_name);
				if (fsutil_wipe(p) != 0)
					log_error("cannot remove %s", p);
			}
		closedir(d);
	}
	if (rmdir(tmp) != 0)
		log_error("remove %s by hand", tmp);
}

/*
 * A restore killed before its rename leaves STORE.restore-XXXXXX: a copy
 * of the backup, perhaps with deletions not yet applied again. Nothing
 * else removes it, so the next restore into the same place wipes it.
 */
static void
remove_stale_tmps(const char *store_dir)
{
	char parent[4096], prefix[300], p[4400], *slash;
	const char *base;
	struct dirent *de;
	size_t plen;
	DIR *d;

	if ((size_t)snprintf(parent, sizeof(parent), "%s", store_dir) >=
	    sizeof(parent))
		return;
	if ((slash = strrchr(parent, '/')) == NULL) {
		base = store_dir;
		strcpy(parent, ".");
	} else {
		base = store_dir + (slash - parent) + 1;
		slash[slash == parent ? 1 : 0] = '\0';
	}
	if (base[0] == '\0' || (size_t)snprintf(prefix, sizeof(prefix),
	    "%s.restore-", base) >= sizeof(prefix) ||
	    (d = opendir(parent)) == NULL)
		return;
	plen = strlen(prefix);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, plen) != 0 ||
		    strlen(de->d_name) != plen + 6)
			continue;
		snprintf(p, sizeof(p), "%s/%s", parent, de->d_name);
		log_warn("removing %s, left by an interrupted restore", p);
		remove_tmp(p);
	}
	closedir(d);
}

/* key_provider = "pkcs11": a session on the token (*prov NULL for files). */
static int
open_token(const struct config *cfg, struct keyprov **prov)
{
	struct keyprov_pkcs11_conf pc = { cfg->pkcs11_module,
	    cfg->pkcs11_token_label, cfg->pkcs11_pin_file };
	char err[512];

	*prov = NULL;
	if (strcmp(cfg->key_provider, "pkcs11") != 0)
		return 0;
	if (keyprov_pkcs11_open(prov, &pc, err, sizeof(err)) != 0) {
		log_error("key_provider = \"pkcs11\": %s; nothing was restored",
		    err);
		return -1;
	}
	return 0;
}

int
maint_restore(const struct config *cfg, const char *backup,
    const char *deletions)
{
	struct backupfile_manifest m;
	struct backupfile_export e;
	struct keyprov *prov = NULL;
	char tmp[4096];
	int r = 1, rc;

	memset(&e, 0, sizeof(e));
	if (open_token(cfg, &prov) != 0)
		return 1;
	rc = check_all(backup, deletions, cfg->store_dir, cfg->keys_dir, prov,
	    &m, &e);
	keyprov_free(prov);	/* the restored copy's vault_open logs in anew */
	if (rc != 0)
		goto out;
	if (deletions == NULL)
		log_warn("--no-deletions: deletions made after the backup "
		    "(from seq %llu) are NOT applied again; consumers deleted "
		    "since it was made come back", (unsigned long long)m.deletion_seq);
	remove_stale_tmps(cfg->store_dir);
	if (make_tmp(cfg->store_dir, tmp, sizeof(tmp)) != 0)
		goto out;
	if (copy_data(backup, &m, tmp) != 0 ||
	    restore_into(cfg, tmp, &m, &e) != 0 ||
	    fsutil_sync_dir(tmp) != 0) {
		remove_tmp(tmp);
		log_error("nothing was restored");
		goto out;
	}
	/* Into place at once; an empty store directory is replaced. */
	if (rename(tmp, cfg->store_dir) != 0 ||
	    fsutil_sync_parent(cfg->store_dir) != 0) {
		log_error("cannot move the restored store to %s: %s",
		    cfg->store_dir, strerror(errno));
		remove_tmp(tmp);
		goto out;
	}
	log_info("restored the backup into %s", cfg->store_dir);
	printf("restored %s into %s\n", backup, cfg->store_dir);
	r = 0;
out:
	backupfile_export_free(&e);
	return r;
}

/*
 * The journal's lock keeps a running daemon out (as for
 * --purge-unknown-attributes): the swap needs the store to itself.
 */
int
maint_compact(const struct config *cfg)
{
	struct vault *v = NULL;
	uint64_t bytes = 0, old = 0;
	int r = 1;

	/* Exclusive even under a replica's config: no replica runs beside. */
	if (vault_open_locked(&v, cfg, VAULT_OPEN_EXISTING, true) != 0) {
		log_error("cannot open the vault, or another vaultd serves it "
		    "(stop the daemon first); nothing was compacted");
		goto out;
	}
	if (vault_open_journal(v) != 0) {
		log_error("the store is in use or its audit journal cannot be "
		    "opened: stop the daemon first; nothing was compacted");
		goto out;
	}
	if (store_compact_prepare(v->store, cfg->store_dir, &bytes) != 0) {
		log_error("the compact copy failed; the store is unchanged");
		goto out;
	}
	vault_close(v);
	v = NULL;
	if (store_compact_swap(cfg->store_dir, &old) != 0)
		goto out;
	log_info("compacted the store: %llu bytes, was %llu",
	    (unsigned long long)bytes, (unsigned long long)old);
	printf("compacted %s/data.mdb: %llu bytes (was %llu)\n", cfg->store_dir,
	    (unsigned long long)bytes, (unsigned long long)old);
	r = 0;
out:
	vault_close(v);
	return r;
}

int
maint_migrate(const struct config *cfg)
{
	uint32_t from, to;
	bool exists;
	int fd, r;

	if (store_exists(cfg->store_dir, &exists) != 0 || !exists) {
		log_error("no store in %s; nothing to migrate", cfg->store_dir);
		return 1;
	}
	/* Alone on the store: its journal's recovery writes data.mdb. */
	if (vault_lock_store(cfg, true, &fd) != 0)
		return 1;
	r = store_migrate(cfg->store_dir, (size_t)cfg->map_size_mb << 20, &from,
	    &to);
	if (fd >= 0)
		close(fd);
	if (r != 0)
		return 1;
	if (from == to)
		printf("store format %u is current; nothing to migrate\n", to);
	else
		printf("store migrated from format %u to %u\n", from, to);
	return 0;
}
