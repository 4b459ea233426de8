/*
 * The audit log: one entry per call that touches personal data or keys,
 * and per denied call, each chained to the previous by a keyed hash.
 *
 * audit:     seq(8) -> fmt(1) | at ms(8) | prev hash(32) | hash(32) |
 *            principal, method, consumer ref, detail, purpose, dataset,
 *            outcome, names, source (each a 2-byte length and its bytes)
 *            Entries written before names and source had fields of their
 *            own end after outcome; their detail held the attribute names
 *            (comma-separated) or "source=S", and reads map it (parse).
 * audit_ref: consumer ref -> seq (dupsort), for access history; and the
 *            dataset key (audit_dataset_key) -> seq for entries of no
 *            consumer that name a dataset (FetchFeatures), so an export
 *            finds the calls of the datasets that received the consumer.
 *            A write's entries go in with the write; entries from the
 *            journal (reads, denials) in batches behind the log
 *            (audit_index): one insert per read at a random place in it
 *            was most of its write cost
 * meta:      "audit_head" -> seq(8) | hash(32)
 *            "audit_indexed" -> seq(8): entries up to it are in audit_ref
 *            "audit_checkpoint" -> fmt(1) | seq(8) | hash(32) | mac(32)
 *
 * hash = keyed BLAKE2b-256(audit key, "vaultd audit v1" | seq | at | prev |
 * fields). The audit key is a vault key sealed under the master key, so the
 * chain cannot be rebuilt by someone who can only write the files; and a
 * signed checkpoint of the head can be kept outside the vault.
 *
 * Text fields hold only valid UTF-8 without control characters. Anything
 * else is stored escaped: "invalid-utf8:" then printable ASCII as it is and
 * every other byte (and the backslash) as \xNN. Valid text that starts
 * with that mark is escaped too, so the form always tells.
 *
 * The checkpoint says "the chain was checked up to entry seq, whose hash
 * is hash": mac = keyed BLAKE2b-256(audit key, "vaultd audit checkpoint v1"
 * | fmt | seq | hash), so it cannot be moved forward by someone who can only
 * write the files (which would skip the check). It only moves forward, and
 * only over a chain just checked: at start, every second while the
 * daemon runs, and at a clean stop. Start-up checks the checkpoint, its
 * entry, and every entry after it; an older checkpoint put back only makes
 * the check longer. Entries before it are checked by the whole check
 * (vaultd --verify-audit, Audit.VerifyAudit).
 */
#ifndef VAULT_AUDIT_H
#define VAULT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "store/store.h"
#include "store/writer.h"

#define AUDIT_HASH_BYTES 32
/* The method of the entries vaultd --purge-unknown-attributes writes. */
#define AUDIT_METHOD_PURGE "vaultd --purge-unknown-attributes"
/* The method of the entries of the janitor's retention pass (retention.h). */
#define AUDIT_METHOD_RETENTION "vaultd retention"
/* The method of the deletions of inactive consumers (retention.h). */
#define AUDIT_METHOD_INACTIVE "vaultd inactivity"
#define AUDIT_N_FIELDS 9
/* The largest encoded entry body: nine fields of at most 1024 bytes. */
#define AUDIT_BODY_MAX (AUDIT_N_FIELDS * (2 + 1024))

/*
 * The audit log: what it writes through and reads from, and its state. The
 * vault owns one (engine/vault.h) and fills it in when it opens; the audit
 * layer reaches nothing else of the vault.
 */
struct audit_log {
	struct store *store;
	struct writer *wr;
	struct keyring *kr;		/* the audit key */
	/* The journal of reads' entries (journal.h); NULL until one opens. */
	struct journal *jn;
	size_t journal_reserve;		/* bytes kept allocated past its files */
	/*
	 * The replica's name (replica_name), or NULL on a single node: the
	 * journal's last sequence moved in is kept per replica, since each
	 * numbers the journal files of its own.
	 */
	const char *replica;
	/* The chain failed a check: health answers NOT_SERVING. */
	volatile int broken;
};

struct audit_rec {
	const char *principal;		/* "-" when unauthenticated */
	const char *method;
	const uint8_t *ref;		/* consumer ref, or NULL */
	const char *detail;		/* what has no field: key version, ... */
	const char *purpose;
	const char *dataset;
	const char *outcome;		/* "ok", "denied", "not_found", ... */
	const char *names;		/* attribute names, comma-separated */
	const char *source;		/* SetConsent: the consent's source */
};

struct audit_entry {
	uint64_t seq, at_ms;
	char principal[128], method[96], detail[256], purpose[64], dataset[80],
	    outcome[48], names[512], source[64];
	bool has_ref;
	uint8_t ref[CRYPTO_REF_BYTES];
	uint8_t prev[AUDIT_HASH_BYTES], hash[AUDIT_HASH_BYTES];
};

/* In a write txn: appends rec, chained to the head, and indexes it. */
int audit_append_txn(struct audit_log *al, struct store_txn *txn,
    const struct audit_rec *rec) VAULT_WUR;
/*
 * The entry body: rec's fields, each a 2-byte length and its bytes, text in
 * its stored form (above; cut to whole characters within 1024 bytes).
 * Returns its length.
 */
size_t audit_encode(const struct audit_rec *rec, uint8_t buf[AUDIT_BODY_MAX]);
/* 0 when body is a well-formed entry body, else VAULT_ERR_STATE. */
int audit_check_body(const uint8_t *body, size_t len) VAULT_WUR;
/*
 * In a write txn: appends an encoded entry made at at_ms; with index, also
 * to the consumer index (else audit_index adds it later). A text field not
 * in its stored form (a body audit_encode did not make) is escaped.
 */
int audit_append_body_txn(struct audit_log *al, struct store_txn *txn,
    uint64_t at_ms, const uint8_t *body, size_t len, bool index) VAULT_WUR;
/*
 * audit_append_body_txn for many entries in one txn: the chain's head is
 * read once at the start and written once at the end (on PostgreSQL each
 * is a query, per entry before). Between begin and end, txn appends to the
 * log only through b.
 */
struct audit_batch {
	uint64_t seq;				/* the last entry's */
	uint8_t hash[AUDIT_HASH_BYTES];
};

int audit_batch_begin(struct store_txn *txn, struct audit_batch *b) VAULT_WUR;
int audit_batch_add(struct audit_log *al, struct store_txn *txn,
    struct audit_batch *b, uint64_t at_ms, const uint8_t *body, size_t len,
    bool index) VAULT_WUR;
int audit_batch_end(struct store_txn *txn,
    const struct audit_batch *b) VAULT_WUR;

/* Appends rec in a durable transaction of its own (group committed). */
int audit_append(struct audit_log *al, const struct audit_rec *rec) VAULT_WUR;

/* Within txn: the last sequence number and hash (0 and zeros when empty). */
int audit_head(struct store_txn *txn, uint64_t *seq,
    uint8_t hash[AUDIT_HASH_BYTES]) VAULT_WUR;

/*
 * Adds the next batch of entries to the consumer index (a lazy write);
 * *more tells whether entries remain. Scans by consumer read the entries
 * past it from the log, and catch it up first when it is far behind.
 */
int audit_index(struct audit_log *al, bool *more) VAULT_WUR;
/* Records where indexing starts, once per store (at open). */
int audit_index_init(struct audit_log *al) VAULT_WUR;

/*
 * What kind of access a call of method is: "read", "write", "consent",
 * "export", "delete", "rekey", "audit_query", "feature_release", "purge",
 * ...; "" for calls that touch no consumer's data.
 */
const char *audit_kind(const char *method);

/*
 * Decodes the stored entry seq (the audit record rec, len bytes) into e;
 * VAULT_ERR_STATE when it is malformed. Does not check its hash.
 */
int audit_entry_decode(uint64_t seq, const uint8_t *rec, size_t len,
    struct audit_entry *e) VAULT_WUR;

/* At most this many names fit an entry's names field. */
#define AUDIT_NAMES_MAX 256

/*
 * Splits an entry's names (comma-separated; changed in place) into at most
 * max pointers into it; returns how many.
 */
size_t audit_split_names(char *names, char **out, size_t max);

/* The key under which the index files the entries of no consumer naming dataset. */
void audit_dataset_key(const struct audit_log *al, const char *dataset, size_t len,
    uint8_t key[CRYPTO_REF_BYTES]);

/* Return non-zero to stop. */
typedef int (*audit_visit)(const struct audit_entry *e, void *arg);

/*
 * Every entry in the log after after_seq, in order, or only those filed
 * under ref (ref != NULL): a consumer ref, or a dataset key
 * (audit_dataset_key). Entries still in the journal are not seen: readers
 * call audit_scan (scan.h), which moves them in first.
 */
int audit_log_scan(struct audit_log *al, uint64_t after_seq, const uint8_t *ref,
    audit_visit fn, void *arg) VAULT_WUR;

/*
 * Checks the whole chain: contiguous sequence numbers, each entry's prev is
 * the previous hash, each hash recomputes, the last is the recorded head,
 * and the log reaches the checkpoint and agrees with it. *first_bad is 0
 * when all is well. Of the log alone, as audit_log_scan: readers call
 * audit_verify (scan.h).
 */
int audit_log_verify(struct audit_log *al, uint64_t *entries,
    uint8_t head[AUDIT_HASH_BYTES], uint64_t *first_bad) VAULT_WUR;

/* What a check of the chain found (audit_check). */
struct audit_check {
	uint64_t checkpoint;	/* the checkpoint's entry; 0: none */
	bool checkpoint_bad;	/* it fails its MAC: changed outside vaultd */
	uint64_t from;		/* the first entry checked */
	uint64_t entries;	/* entries read */
	uint64_t first_bad;	/* the first entry missing or changed; 0: none */
	const char *why;	/* what is wrong with it, for the log */
	uint64_t end;		/* the last entry, when all is well */
};

/*
 * Checks the chain in one snapshot: with whole, every entry; else the
 * checkpoint, its entry and every entry after it (all of them when there is
 * no checkpoint). With record, when all is well, moves the checkpoint to
 * the end (a lazy commit; nothing is written otherwise).
 */
int audit_check(struct audit_log *al, bool whole, bool record,
    struct audit_check *c) VAULT_WUR;
static inline bool
audit_check_ok(const struct audit_check *c)
{
	return !c->checkpoint_bad && c->first_bad == 0;
}
/* What is wrong, for the log ("entry 8 does not verify ..."); no data. */
void audit_check_describe(const struct audit_check *c, char *buf, size_t len);

#endif
