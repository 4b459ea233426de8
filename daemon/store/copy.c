#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/copy.h"
#include "store/store_lmdb.h"
#include "util/crashpoint.h"
#include "util/fsutil.h"
#include "util/log.h"

static const char data_name[] = "data.mdb";
static const char compact_name[] = "data.mdb.compact";
static const char old_name[] = "data.mdb.old";

int
store_copy_fd(struct store *st, int fd)
{
	struct lmdb_store *ls = store_lmdb(st);
	int rc;

	if (st->failed)
		return VAULT_ERR_UNAVAILABLE;
	if (ls == NULL) {
		log_error("a copy of the store file is for LMDB only; back a "
		    "PostgreSQL store up with PostgreSQL's tools (pg_basebackup)");
		return VAULT_ERR_UNIMPLEMENTED;
	}
	if ((rc = mdb_env_copyfd2(ls->env, fd, MDB_CP_COMPACT)) == 0)
		return 0;
	if (rc == EPIPE) {
		log_warn("store copy: the reader went away");
		return VAULT_ERR_IO;
	}
	return store_err(st, rc, "compact copy");
}

static int
path_in(char *buf, size_t len, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len) {
		log_error("the store directory's path is too long");
		return VAULT_ERR_INVALID;
	}
	return 0;
}

/*
 * Stale files of a compaction that did not finish: wiped, never reused.
 * An old name that is still the live file's second name (a crash before
 * the swap) is only unlinked: wiping it would zero the store.
 */
static int
remove_stale(const char *dir)
{
	char p[4096], data[4096];
	struct stat a, b;
	int r;

	if ((r = path_in(p, sizeof(p), dir, compact_name)) != 0 ||
	    (r = fsutil_wipe(p)) != 0 ||
	    (r = path_in(data, sizeof(data), dir, data_name)) != 0 ||
	    (r = path_in(p, sizeof(p), dir, old_name)) != 0)
		return r;
	if (lstat(p, &a) != 0)
		return 0;
	if (stat(data, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
		if (unlink(p) != 0) {
			log_error("cannot remove %s: %s", p, strerror(errno));
			return VAULT_ERR_IO;
		}
		return 0;
	}
	log_warn("wiping %s, left by a compaction that did not finish", p);
	return fsutil_wipe(p);
}

int
store_compact_prepare(struct store *st, const char *dir, uint64_t *bytes)
{
	char path[4096];
	struct stat sb;
	int fd = -1, r;

	*bytes = 0;
	if ((r = remove_stale(dir)) != 0 ||
	    (r = path_in(path, sizeof(path), dir, compact_name)) != 0)
		return r;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) < 0) {
		log_error("cannot create %s: %s", path, strerror(errno));
		return VAULT_ERR_IO;
	}
	VAULT_CRASH_POINT("compact.after_create");
	if ((r = store_copy_fd(st, fd)) != 0)
		goto fail;
	if (fsync(fd) != 0 || fstat(fd, &sb) != 0) {
		log_error("cannot sync %s: %s", path, strerror(errno));
		r = errno == ENOSPC ? VAULT_ERR_NOSPACE : VAULT_ERR_IO;
		goto fail;
	}
	close(fd);
	*bytes = (uint64_t)sb.st_size;
	return 0;
fail:
	close(fd);
	if (fsutil_wipe(path) != 0)
		log_error("remove %s by hand", path);
	return r;
}

int
store_compact_swap(const char *dir, uint64_t *old_bytes)
{
	char data[4096], copy[4096], old[4096];
	struct stat sb;
	int r;

	*old_bytes = 0;
	if ((r = path_in(data, sizeof(data), dir, data_name)) != 0 ||
	    (r = path_in(copy, sizeof(copy), dir, compact_name)) != 0 ||
	    (r = path_in(old, sizeof(old), dir, old_name)) != 0)
		return r;
	if (stat(data, &sb) != 0) {
		log_error("cannot examine %s: %s", data, strerror(errno));
		return VAULT_ERR_IO;
	}
	*old_bytes = (uint64_t)sb.st_size;
	/* A second name for the old file, so it can be wiped after the swap. */
	if (link(data, old) != 0) {
		log_error("cannot link %s to %s: %s", data, old, strerror(errno));
		return VAULT_ERR_IO;
	}
	VAULT_CRASH_POINT("compact.before_rename");
	if (rename(copy, data) != 0) {
		log_error("cannot rename %s to %s: %s; the store is unchanged",
		    copy, data, strerror(errno));
		(void)unlink(old);
		return VAULT_ERR_IO;
	}
	if ((r = fsutil_sync_dir(dir)) != 0)
		return r;
	VAULT_CRASH_POINT("compact.after_rename");
	/* The old file's pages hold freed residue: zeros before its blocks go. */
	if ((r = fsutil_wipe(old)) != 0) {
		log_error("the store was compacted, but %s could not be wiped; "
		    "remove it by hand", old);
		return r;
	}
	return fsutil_sync_dir(dir);
}
