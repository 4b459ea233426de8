/*
 * Copies of the store: the hot backup's compact copy and offline
 * compaction (copy.c).
 *
 * A compact copy holds only the pages in use, renumbered: no free page,
 * so no residue of a deleted consumer's wrapped key that LMDB's
 * copy-on-write left in freed pages (design: shred epochs), and a file
 * the size of the live data. It is a consistent snapshot: the copy runs in
 * one read transaction of its own, while writers go on.
 *
 * Compaction swaps such a copy in for the data file, crash-safely:
 *   1. DIR/data.mdb.compact (O_EXCL, 0600) is written and fsynced;
 *   2. the old data file gets a second name, DIR/data.mdb.old;
 *   3. rename(data.mdb.compact, data.mdb), fsync DIR: the swap;
 *   4. data.mdb.old is overwritten with zeros, fsynced and removed.
 * A crash before 3 leaves the old store whole (plus stale files the next
 * compaction removes); after 3, the new one. Only while no process has
 * the store open: the old file stays mapped in a process that has.
 */
#ifndef VAULT_STORE_COPY_H
#define VAULT_STORE_COPY_H

#include <stdint.h>

#include "store/store.h"

/*
 * Writes a compact, consistent copy of the store's data file to fd (a
 * file or a pipe), sequentially; fd is not synced or closed. A reader slot
 * and a snapshot are held until it returns. VAULT_ERR_IO when fd refuses a
 * write (a closed pipe: the reader went away).
 */
int store_copy_fd(struct store *st, int fd) VAULT_WUR;

/*
 * Compaction, step 1 (above): the compact copy into DIR/data.mdb.compact,
 * fsynced. A stale copy or old file a crashed compaction left is removed
 * (wiped) first. *bytes: the copy's size.
 */
int store_compact_prepare(struct store *st, const char *dir,
    uint64_t *bytes) VAULT_WUR;
/*
 * Steps 2-4, once the store is closed (store_close) and no other process
 * has it open. *old_bytes: the replaced file's size.
 */
int store_compact_swap(const char *dir, uint64_t *old_bytes) VAULT_WUR;

#endif
