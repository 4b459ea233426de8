/*
 * The audit journal: where the audit entries of calls that write nothing to
 * the store (reads, denials) go before the call's reply leaves.
 *
 * A store commit per read cost about ten page writes on the read path. A
 * journal append is one write(2) to a file in the store directory; the
 * entries reach the audit log (audit.h) in one transaction per window of
 * JOURNAL_INGEST_MS, or ahead of the next write's entries, whichever comes
 * first, so the chain keeps the order in which the calls were made. Reading
 * the audit log (journal_sync) first moves every journaled entry in.
 *
 * Durability is what it was with lazy commits: a process crash loses
 * nothing (the next start moves the journal's entries in); a power failure
 * may lose the last JOURNAL_INGEST_MS of entries.
 *
 * The journal alternates between two files, audit-journal.0 and .1: while
 * one takes appends, the other's entries are moved in, made durable, and
 * the file emptied. A record:
 *   fmt(1) | body length(2) | journal seq(8) | at ms(8) | body | mac(32)
 * where body is the entry's fields (audit_encode) and mac is keyed
 * BLAKE2b-256(audit key, "vaultd audit journal v1" | the bytes before it).
 * At start, a record that fails its MAC, or a gap in the journal sequence,
 * stops the daemon (the file was changed by something else); a record cut
 * short at a file's end is the mark of a crash mid-write and is dropped.
 */
#ifndef VAULT_JOURNAL_H
#define VAULT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"

#define JOURNAL_INGEST_MS 20
/* How often the journal thread brings the consumer index up to date. */
#define JOURNAL_INDEX_MS 1000

struct journal;

/*
 * Opens the journal files in dir, moves the entries a crash left in them
 * into the audit log (durably), and starts the thread that moves entries in
 * every ingest_ms, and every index_ms indexes the log by consumer and
 * checks it since the audit checkpoint, moving that forward (audit.h). A
 * break found turns al->broken on.
 * VAULT_ERR_STATE when a journal file is damaged, or when
 * another process holds the journal (it takes an exclusive flock). Only
 * the daemon opens it; an in-process reader of the store does not.
 */
int journal_open(struct journal **out, struct audit_log *al, const char *dir,
    int ingest_ms, int index_ms) VAULT_WUR;

/*
 * Appends n entries in one write; they are on their way to the audit log
 * when it returns 0. Fails (and appends nothing) when the file cannot be
 * written.
 */
int journal_append(struct journal *j, const struct audit_rec *recs,
    size_t n) VAULT_WUR;

/* Moves every entry journaled so far into the audit log (committed). */
int journal_sync(struct journal *j) VAULT_WUR;

/* The sequence of the last entry journaled so far. */
uint64_t journal_mark(struct journal *j);

/*
 * Moves the entries up to mark (journal_mark) into the audit log, if a
 * write group has not already: none waits when every one of them is in.
 */
int journal_sync_to(struct journal *j, uint64_t mark) VAULT_WUR;

/* Entries journaled and not yet moved into the audit log (the backlog). */
size_t journal_backlog(struct journal *j);

/*
 * Moves the remaining entries in durably, moves the audit checkpoint to the
 * end (audit_check), then closes. NULL-safe.
 */
void journal_close(struct journal *j);

/* One record's fields; body points into the parsed buffer. Non-zero stops. */
typedef int (*journal_visit)(uint64_t seq, uint64_t at_ms, const uint8_t *body,
    size_t len, void *arg);

/*
 * Walks the records of a journal file's bytes buf[0..len): checks each
 * one's format, length, MAC under the audit key and entry body, and calls fn
 * with it, in file order. *used: the bytes of whole records; what follows
 * them is a record cut short by a crash. Returns what fn returned when it
 * stopped the walk; VAULT_ERR_STATE with *why (what is wrong) and *at (the
 * record's offset) when a record is damaged; else 0 (*why NULL).
 */
int journal_parse(const uint8_t *buf, size_t len, const uint8_t *key,
    journal_visit fn, void *arg, size_t *used, size_t *at,
    const char **why) VAULT_WUR;

#endif
