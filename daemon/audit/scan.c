#include "audit/journal.h"
#include "audit/scan.h"

/* Entries still in the journal go in first, so the reader sees them. */
static int
sync_journal(struct audit_log *al)
{
	return al->jn != NULL ? journal_sync(al->jn) : 0;
}

uint64_t
audit_mark(struct audit_log *al)
{
	return al->jn != NULL ? journal_mark(al->jn) : 0;
}

int
audit_scan(struct audit_log *al, uint64_t after_seq, const uint8_t *ref,
    audit_visit fn, void *arg)
{
	return audit_scan_to(al, audit_mark(al), after_seq, ref, fn, arg);
}

int
audit_scan_to(struct audit_log *al, uint64_t mark, uint64_t after_seq,
    const uint8_t *ref, audit_visit fn, void *arg)
{
	int r;

	if (al->jn != NULL && (r = journal_sync_to(al->jn, mark)) != 0)
		return r;
	return audit_log_scan(al, after_seq, ref, fn, arg);
}

int
audit_verify(struct audit_log *al, uint64_t *entries,
    uint8_t head[AUDIT_HASH_BYTES], uint64_t *first_bad)
{
	int r;

	*entries = 0;
	*first_bad = 0;
	if ((r = sync_journal(al)) != 0)
		return r;
	return audit_log_verify(al, entries, head, first_bad);
}
