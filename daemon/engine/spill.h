/*
 * Fixed-size rows kept in buckets of a sealed, unlinked temporary file, so
 * a stream's snapshot needs memory for one bucket at a time, not for every
 * consumer (fetch.c).
 *
 * Rows are added to a bucket in any order and read back a bucket at a time,
 * in the order they were added. Each bucket buffers one block (16 KiB) in
 * memory; a full block is sealed (XChaCha20-Poly1305 under a key made for
 * this spill alone, kept in locked memory, never written) and appended to
 * the file. The file is opened with O_TMPFILE | O_EXCL: no name ever
 * reaches it, and it is gone when closed, crash included (a filesystem
 * without O_TMPFILE is refused). Memory: the buffers, and 24 bytes a block
 * written.
 * A block's nonce is its number in the file and its associated data names
 * its bucket and row count, so a block altered, moved or swapped on disk
 * fails to open (VAULT_ERR_CRYPTO) rather than changing a row.
 */
#ifndef VAULT_SPILL_H
#define VAULT_SPILL_H

#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

struct spill;

/*
 * A spill of n_buckets buckets of rows of row_bytes each, its file in dir.
 * VAULT_ERR_IO (logged with the reason) when no file can be made there.
 * The files of all spills of the process may hold max_total bytes in all.
 */
int spill_open(struct spill **out, const char *dir, size_t n_buckets,
    size_t row_bytes, uint64_t max_total) VAULT_WUR;

/*
 * Adds a row (row_bytes) to bucket b; a full block is sealed and written.
 * VAULT_ERR_LIMIT when the block would take the spills past max_total;
 * VAULT_ERR_NOSPACE when the filesystem is full.
 */
int spill_add(struct spill *s, size_t b, const void *row) VAULT_WUR;

/* Rows bucket b holds. */
size_t spill_count(const struct spill *s, size_t b);

/*
 * Calls fn(arg, rows, n) with bucket b's rows, in the order added, a block
 * at a time (rows of row_bytes, valid during the call, wiped after); stops
 * at fn's first non-zero return and returns it. A block that fails to
 * open: VAULT_ERR_CRYPTO.
 */
int spill_read(struct spill *s, size_t b,
    int (*fn)(void *arg, const void *rows, size_t n), void *arg) VAULT_WUR;

/* Wipes the buffers and key, and closes (so deletes) the file. NULL-safe. */
void spill_close(struct spill *s);

#endif
