/*
 * Reading the audit log as callers must: every entry made so far, those
 * still in the journal (journal.h) included. audit.h's audit_log_scan and
 * audit_log_verify read only what the log holds; these move the journal's
 * entries in first, so a query never misses the read it follows.
 */
#ifndef VAULT_AUDIT_SCAN_H
#define VAULT_AUDIT_SCAN_H

#include "audit/audit.h"

/* audit_log_scan, after moving the journal's entries in. */
int audit_scan(struct audit_log *al, uint64_t after_seq, const uint8_t *ref,
    audit_visit fn, void *arg) VAULT_WUR;

/*
 * Where the journal stands now (0 without one): audit_scan_to with it
 * sees every entry journaled before, and waits for no write when a write
 * group made since has already moved them in. ExportConsumer takes one
 * when it starts: its scans (the consumer's, one per dataset) then wait
 * at most once, and not at all when other writes drained the journal.
 */
uint64_t audit_mark(struct audit_log *al);

/* audit_scan, after moving in the journal's entries up to mark. */
int audit_scan_to(struct audit_log *al, uint64_t mark, uint64_t after_seq,
    const uint8_t *ref, audit_visit fn, void *arg) VAULT_WUR;

/* audit_log_verify, after moving the journal's entries in. */
int audit_verify(struct audit_log *al, uint64_t *entries,
    uint8_t head[AUDIT_HASH_BYTES], uint64_t *first_bad) VAULT_WUR;

#endif
