/*
 * Files that appear whole or not at all.
 *
 * fsutil_write_atomic writes to PATH.tmp in the same directory (created
 * with O_EXCL and the final mode; a stale one a crash left is wiped and
 * removed first), fsyncs it, renames it over PATH (or, without
 * FSUTIL_REPLACE, only where PATH does not exist yet) and fsyncs the
 * directory. A crash at any point leaves PATH as it was (absent, or the
 * previous complete file) or the new complete file, plus at most a stale
 * PATH.tmp, never a partial PATH.
 *
 * area names the crash points (crashpoint.h) "<area>.after_create" (the
 * temporary file exists, empty) and "<area>.before_rename" (written and
 * synced, not yet renamed); NULL: none.
 */
#ifndef VAULT_FSUTIL_H
#define VAULT_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "util/vault_err.h"

#define FSUTIL_REPLACE 1	/* replace an existing PATH */
#define FSUTIL_TMP_SUFFIX ".tmp"

/*
 * 0, VAULT_ERR_EXISTS (PATH exists and FSUTIL_REPLACE is not set; nothing
 * changed) or VAULT_ERR_IO (logged; nothing changed but a temporary file
 * that could not be removed).
 */
int fsutil_write_atomic(const char *path, const void *data, size_t len,
    mode_t mode, int flags, const char *area) VAULT_WUR;

/*
 * Overwrites path's bytes with zeros, fsyncs and unlinks it; the directory
 * is not synced (fsutil_sync_parent). 0 also when path does not exist.
 */
int fsutil_wipe(const char *path) VAULT_WUR;

/* fsyncs the directory holding path. */
int fsutil_sync_parent(const char *path) VAULT_WUR;
/* fsyncs the directory dir itself. */
int fsutil_sync_dir(const char *dir) VAULT_WUR;

#endif
