#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/crashpoint.h"
#include "util/fsutil.h"
#include "util/log.h"

int
fsutil_sync_dir(const char *dir)
{
	int fd, r = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return VAULT_ERR_IO;
	if (fsync(fd) != 0)
		r = VAULT_ERR_IO;
	close(fd);
	return r;
}

int
fsutil_sync_parent(const char *path)
{
	char dir[4096], *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return VAULT_ERR_IO;
	if ((slash = strrchr(dir, '/')) == NULL)
		return fsutil_sync_dir(".");
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return fsutil_sync_dir(dir);
}

int
fsutil_wipe(const char *path)
{
	static const char zero[4096];
	struct stat sb;
	off_t left;
	int fd, r = VAULT_ERR_IO;

	if ((fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return 0;
		/* A symlink or a file we cannot write: remove the name anyway. */
		return unlink(path) == 0 || errno == ENOENT ? 0 : VAULT_ERR_IO;
	}
	if (fstat(fd, &sb) != 0)
		goto out;
	for (left = S_ISREG(sb.st_mode) ? sb.st_size : 0; left > 0;) {
		size_t n = left > (off_t)sizeof(zero) ? sizeof(zero) : (size_t)left;
		ssize_t w = write(fd, zero, n);

		if (w <= 0)
			goto out;
		left -= w;
	}
	if (fsync(fd) != 0)
		goto out;
	if (unlink(path) != 0 && errno != ENOENT)
		goto out;
	r = 0;
out:
	close(fd);
	return r;
}

static int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static void
crash_at(const char *area, const char *step)
{
	char name[96];

	if (area == NULL)
		return;
	snprintf(name, sizeof(name), "%s.%s", area, step);
	VAULT_CRASH_POINT(name);
	(void)name;
}

/* Moves tmp to path; without replace, only where path does not exist. */
static int
publish(const char *tmp, const char *path, int flags)
{
	if (flags & FSUTIL_REPLACE)
		return rename(tmp, path);
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* A file system without RENAME_NOREPLACE: link(2) never replaces. */
	if (link(tmp, path) != 0)
		return -1;
	return unlink(tmp) == 0 || errno == ENOENT ? 0 : -1;
}

int
fsutil_write_atomic(const char *path, const void *data, size_t len,
    mode_t mode, int flags, const char *area)
{
	char tmp[4096];
	int fd = -1, r = VAULT_ERR_IO, e;

	if (snprintf(tmp, sizeof(tmp), "%s%s", path, FSUTIL_TMP_SUFFIX) >=
	    (int)sizeof(tmp)) {
		log_error("path too long: %s", path);
		return VAULT_ERR_IO;
	}
	if (!(flags & FSUTIL_REPLACE) && access(path, F_OK) == 0)
		return VAULT_ERR_EXISTS;
	/* Left by a crash before its rename: never published, so never used. */
	if (fsutil_wipe(tmp) != 0) {
		log_error("cannot remove the stale temporary file %s: %s", tmp,
		    strerror(errno));
		return VAULT_ERR_IO;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode)) < 0) {
		log_error("cannot create %s: %s", tmp, strerror(errno));
		return VAULT_ERR_IO;
	}
	crash_at(area, "after_create");
	if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 ||
	    fsync(fd) != 0) {
		log_error("cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	crash_at(area, "before_rename");
	if (publish(tmp, path, flags) != 0) {
		e = errno;
		if (e == EEXIST) {
			r = VAULT_ERR_EXISTS;
			goto fail;
		}
		log_error("cannot rename %s to %s: %s", tmp, path, strerror(e));
		goto fail;
	}
	if (fsutil_sync_parent(path) != 0) {
		/* In place; only its durability across a power cut is unsure. */
		log_error("cannot sync the directory of %s: %s", path,
		    strerror(errno));
		return VAULT_ERR_IO;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (fsutil_wipe(tmp) != 0)
		log_error("cannot remove %s: %s", tmp, strerror(errno));
	return r;
}
