/*
 * The single writer: every write to the store runs here, and concurrent
 * requests are grouped into one durable transaction (group commit).
 *
 * Each request runs in its own nested transaction, so a request that fails
 * leaves nothing behind while the others in the group still commit. A
 * request is acknowledged only after the group's transaction is on disk
 * (lazy requests, below, once it is committed).
 */
#ifndef VAULT_WRITER_H
#define VAULT_WRITER_H

#include <stdbool.h>

#include "store/store.h"
#include "util/vault_err.h"

struct writer;

/*
 * Applies one request inside txn (its own nested write transaction, see
 * store.h); returns 0 or a vault error, which undoes the request. fn keeps
 * no store_val or cursor past its return.
 */
typedef int (*writer_fn)(struct store_txn *txn, void *arg);

int writer_start(struct writer **out, struct store *st,
    unsigned max_group) VAULT_WUR;

/*
 * Runs fn(txn, arg) in the writer thread and waits until its group is
 * durable. Returns fn's result, or a store error when the group's commit
 * failed (then nothing of the request was written).
 */
int writer_submit(struct writer *w, writer_fn fn, void *arg) VAULT_WUR;

/*
 * A hook armed on the calling thread runs in the same nested transaction as
 * the next request that thread submits, right after it succeeds; if the
 * hook fails, the request fails and nothing of it is written. It then
 * disarms itself. The RPC runtime uses it to write a call's audit entry
 * atomically with the call's write.
 */
void writer_hook_arm(writer_fn fn, void *arg);
void writer_hook_disarm(void);
/* True once the armed hook ran in a committed request. */
bool writer_hook_fired(void);

/*
 * Like writer_submit, but acknowledged once committed, before its fsync: a
 * later durable commit, or the flusher thread within 20 ms, makes it
 * durable. A process crash loses nothing (the pages are in the OS's cache);
 * a power failure may lose the last 20 ms of lazy requests. For rotation
 * batches, and the audit journal's moves and index batches.
 *
 * While the writer is idle, lazy requests are applied by the threads that
 * submit them (one thread applies its own and any others queued), which
 * spares each two thread hand-offs; fn therefore must not rely on
 * thread-local state, and a lazy request gets no hook.
 */
int writer_submit_lazy(struct writer *w, writer_fn fn, void *arg) VAULT_WUR;

/*
 * Preludes run first in every group's transaction, in the order added, on
 * whichever thread applies the group; if one fails, the group fails (and
 * the later ones do not run). done(arg, committed) follows the group's
 * commit or abort. The keyring's step comes first (it picks up key
 * versions other replicas activated or destroyed, so nothing in the group
 * wraps under a stale key); the audit journal's moves its entries into the
 * store ahead of the group's own. At most WRITER_PRELUDES, added while no
 * group runs (at start); writer_remove_prelude empties the slot of arg's
 * prelude, also while no group runs (the journal's close).
 */
#define WRITER_PRELUDES 4
void writer_add_prelude(struct writer *w, writer_fn fn,
    void (*done)(void *arg, bool committed), void *arg);
void writer_remove_prelude(struct writer *w, void *arg);

/* Finishes queued requests, then stops the thread and frees w. NULL-safe. */
void writer_stop(struct writer *w);

/*
 * The writer's counters since start, for the metrics endpoint: groups
 * committed, requests in them, fsyncs (each durable commit's, and each of
 * the flusher's), and groups by size: group_size[b] counts groups of at
 * most 2^b requests (and more than 2^(b-1)); the last bucket, the rest.
 * Lock-free: each counter read on its own.
 */
#define WRITER_GROUP_BUCKETS 9		/* 1, 2, 4, ... 256; then +Inf */
struct writer_metrics {
	unsigned long long groups, requests, fsyncs;
	unsigned long long group_size[WRITER_GROUP_BUCKETS + 1];
};
void writer_metrics(const struct writer *w, struct writer_metrics *out);

/* Groups committed and requests applied since start, for the logs. */
void writer_stats(const struct writer *w, unsigned long long *groups,
    unsigned long long *requests);

#endif
