/*
 * Pseudonymous, tokenized feature rows for ML.
 *
 * A stream starts from one read-only snapshot: every consumer whose consent
 * covers the purpose (after the page token's position, if any), each as
 * stream position, ref, pseudonym and one token per attribute. Rare-value
 * suppression counts over exactly those rows: a categorical token held by
 * fewer than k of them becomes the attribute's OTHER token, so every other
 * token the call releases is held by at least k of its rows. The rows then go out in stream-position order (a keyed
 * permutation per purpose, see tokenize.h), a page at a time; before each
 * page, its consumers are checked again in a fresh transaction, and those
 * deleted or no longer consenting since the snapshot are left out (so a
 * count may end below k by those late removals only).
 *
 * Lineage: before a page leaves the vault, the rows it holds are recorded
 * against the dataset (durably, lineage.h), so a later deletion knows who
 * received the consumer. A write is one durable commit of the single
 * writer, which bounded every stream when each page was a write
 * (docs/performance.md, "Python client"). So rows are recorded ahead of the
 * pages sent, as many as have left already (at least a page, at most
 * FETCH_LINEAGE_AHEAD) in one write. The price: a stream that stops
 * early, or whose rows drop out at their page's re-check (deleted, or
 * consent withdrawn, since the snapshot), leaves lineage for rows it never sent, at most as many as it
 * sent. A deletion then reports such a consumer to a dataset that does
 * not hold it, and ExportConsumer lists the dataset: lineage says "may
 * have received", never less than what left.
 *
 * Memory: a row is 72 + 8 * n_attrs bytes. A snapshot of up to
 * stream_memory_rows rows (the configuration's) is held whole. A larger
 * one is cut by stream position into buckets of about that many rows,
 * sealed into a temporary file with no name (spill.h) in the journal's
 * directory, at most stream_spill_max_mb for all streams; a stream then
 * holds the bucket it sends from and the rows of its lineage ahead
 * (FETCH_LINEAGE_AHEAD), and, while it takes the snapshot, a 16 KiB block
 * for each bucket. Rare-value counts are a table of token and count (16
 * bytes a distinct category token, doubled for room). A shard call of a
 * query with categories also holds its rows' category tokens (8 bytes
 * each) for its meet. Streams are capped per principal
 * (max_streams_per_principal) and in all (max_streams).
 *
 * The snapshot is read in one read-only transaction, which keeps the store
 * from reusing pages freed meanwhile; a resumed call skips rows at or before its
 * page token before decrypting anything.
 *
 * Sharding: a call may take one shard of N (N <= FETCH_MAX_SHARDS), so N
 * readers can share a stream. A consumer's shard comes from its stream
 * position (fetch_shard_of): shard i is the i-th contiguous slice of the
 * purpose's keyed permutation. The position is a keyed per-purpose value
 * like the pseudonym, so shard membership links nothing across purposes and
 * tells nothing the unsharded stream's order does not; unlike the
 * pseudonym it is known before anything is decrypted, so a shard skips the
 * other shards' consumers cheaply. The N shards' rows together are exactly
 * the unsharded stream's (same pseudonyms, same tokens), each in one shard:
 * rare values are counted over every shard's rows. So a shard's released
 * token is held by at least k rows of the whole stream, not of the shard.
 * Every shard call reads only its own shard's consumers (the others are
 * skipped before their consent is read). A query without categorical
 * attributes counts nothing more; one with them takes the other shards'
 * counts from the shard calls of the same query running at the same time
 * (shardmeet.h: they post their rows' category tokens counted, 16 bytes
 * for each token held, and wait a while for each other), and reads the
 * category tokens of the shards no call posted itself. Calls that meet
 * count over snapshots taken moments
 * apart: the union is the unsharded stream's exactly when nothing was
 * written in between, as two unsharded calls are alike only then.
 */
#ifndef VAULT_FETCH_H
#define VAULT_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "crypto/crypto.h"
#include "engine/tokenize.h"
#include "engine/vault.h"

/* The most rows one lineage write records ahead of the pages sent. */
#define FETCH_LINEAGE_AHEAD 32768

#define FETCH_ASKER_BYTES 32

/* The most shards a stream may be cut into. */
#define FETCH_MAX_SHARDS 1024

/* A place in a purpose's stream: position first, ref to break ties. */
struct fetch_pos {
	uint64_t order;
	uint8_t ref[CRYPTO_REF_BYTES];
};

struct fetch_query {
	int purpose;
	const int *attrs;
	size_t n_attrs;
	bool has_after;
	struct fetch_pos after;		/* start after this place */
	int64_t today_days;		/* for age bands */
	uint32_t shard_index;		/* release only this shard's rows */
	uint32_t shard_count;		/* 0 or 1: the whole stream */
	/*
	 * Who asked for what, shard aside: the caller's digest of principal,
	 * purpose, dataset and attributes. Shard calls meet (shardmeet.h)
	 * only when it is the same, so one principal's calls never wait on,
	 * or time, another's.
	 */
	uint8_t asker[FETCH_ASKER_BYTES];
	/* Polled during the snapshot scan; true stops it (CANCELLED). */
	bool (*cancelled)(void *arg);
	void *cancel_arg;
};

struct fetch_row {
	struct fetch_pos pos;
	uint64_t created_ms;		/* tells a re-created consumer from this one */
	uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES];
	bool gone;			/* left out at the page re-check */
};

struct fetch_tally;
struct spill;

/*
 * A snapshot's rows, n in all, in stream order. Rows [base, base + len)
 * are held in memory, row i at rows[i - base] (fetch_row_at); a set of
 * more rows than the vault's stream_memory_rows keeps the others sealed in
 * a temporary file (spill.h), in buckets of contiguous stream positions,
 * each sorted and suppressed as it is taken in. Rows are taken in going
 * forward only: fetch_recheck and fetch_page take in the rows they are
 * given and let go of those before them.
 */
struct fetch_set {
	size_t n, n_attrs;		/* rows in all; tokens a row */
	size_t base, len;		/* rows held: [base, base + len) */
	size_t off, cap;		/* row base at rows[off]; room for cap */
	struct fetch_row *rows;
	uint64_t *tokens;		/* cap rows of n_attrs, same places */
	size_t lineage_to;		/* rows [0, lineage_to) are on record */
	/* How the rest is kept (fetch.c). */
	struct fetch_tally *tally;	/* category tokens counted */
	struct spill *spill;		/* NULL: every row is held */
	size_t n_buckets, next_bucket;
	uint64_t lo, span;		/* positions the buckets cover */
};

/* Row i of set, and its tokens: i must be held (see fetch_set), or abort. */
static inline size_t
fetch_place(const struct fetch_set *set, size_t i)
{
	if (i < set->base || i - set->base >= set->len)
		abort();
	return set->off + (i - set->base);
}

static inline struct fetch_row *
fetch_row_at(const struct fetch_set *set, size_t i)
{
	return &set->rows[fetch_place(set, i)];
}

static inline uint64_t *
fetch_tokens_at(const struct fetch_set *set, size_t i)
{
	return set->tokens + fetch_place(set, i) * set->n_attrs;
}

/*
 * The shard, of count (0 or 1: one shard, 0), of the consumer at stream
 * position order: order scaled to [0, count), so each shard is a contiguous
 * slice of positions of 2^64 / count.
 */
uint32_t fetch_shard_of(uint64_t order, uint32_t count);

/* The first stream position of shard idx (< count): fetch_shard_of's inverse. */
uint64_t fetch_shard_start(uint32_t idx, uint32_t count);

/* Takes the snapshot of q into set (emptied first). */
int fetch_snapshot(struct vault *v, const struct fetch_query *q,
    struct fetch_set *set) VAULT_WUR;

/*
 * Holds rows [from, from + n) (and lets go of those before from), then
 * checks them again in a fresh transaction: marks gone
 * those deleted (or deleted and created again: another consumer now) or no
 * longer allowed for the purpose (a row once gone stays gone), and clears
 * the sensitive tokens of consumers who limited sensitive data since.
 */
int fetch_recheck(struct vault *v, const struct fetch_query *q,
    struct fetch_set *set, size_t from, size_t n) VAULT_WUR;

/*
 * Records that dataset received rows [from, from + n) not gone; durable.
 * Rows whose consumer was deleted meanwhile are marked gone instead.
 */
int fetch_record_lineage(struct vault *v, uint32_t dataset,
    struct fetch_set *set, size_t from, size_t n) VAULT_WUR;

/*
 * Readies rows [from, from + n) to leave the vault: fetch_recheck, then,
 * unless set->lineage_to covers them, fetch_record_lineage of the page and
 * of rows after it (see Lineage above). On 0 the rows not gone may be
 * sent: whoever receives them is on record, durably, before they leave
 * (a row once gone stays gone). On an error
 * nothing of the page may be sent. The two steps are public for tests and
 * the benchmark; a caller releasing rows uses this.
 */
int fetch_page(struct vault *v, const struct fetch_query *q, uint32_t dataset,
    struct fetch_set *set, size_t from, size_t n) VAULT_WUR;

/* Frees and wipes set's memory. */
void fetch_set_free(struct fetch_set *set);

/* Days since 1970-01-01, today (UTC). */
int64_t fetch_today(void);

#endif
