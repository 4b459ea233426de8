#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/consent.h"
#include "engine/consumer.h"
#include "engine/fetch.h"
#include "engine/lineage.h"
#include "engine/shardmeet.h"
#include "engine/spill.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "engine/record.h"

#define CANCEL_POLL 1024

int64_t
fetch_today(void)
{
	return (int64_t)(store_now_ms() / 86400000ULL);
}

/* ------------------------------------------------------------ the tally */

/*
 * Category tokens counted, by attribute: open addressing on the token (a
 * keyed hash, so already spread), token 0 marking a free slot.
 */
struct tally_slot {
	uint64_t token;
	uint32_t count;
	uint32_t attr;
};

struct fetch_tally {
	struct tally_slot *slot;
	size_t cap, n;			/* cap a power of two */
};

static size_t
slot_of(const struct fetch_tally *t, uint32_t attr, uint64_t token)
{
	return (size_t)((token ^ ((uint64_t)attr * 0x9e3779b97f4a7c15ULL)) &
	    (t->cap - 1));
}

static struct tally_slot *
tally_find(const struct fetch_tally *t, uint32_t attr, uint64_t token)
{
	size_t i = slot_of(t, attr, token);

	while (t->slot[i].token != 0 &&
	    (t->slot[i].token != token || t->slot[i].attr != attr))
		i = (i + 1) & (t->cap - 1);
	return &t->slot[i];
}

static void
tally_free(struct fetch_tally *t)
{
	if (t == NULL)
		return;
	if (t->slot != NULL)
		sodium_memzero(t->slot, t->cap * sizeof(*t->slot));
	free(t->slot);
	free(t);
}

static int
tally_grow(struct fetch_tally *t)
{
	struct fetch_tally bigger = { NULL, t->cap ? 2 * t->cap : 1024, t->n };

	if ((bigger.slot = calloc(bigger.cap, sizeof(*bigger.slot))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slot[i].token != 0)
			*tally_find(&bigger, t->slot[i].attr, t->slot[i].token) =
			    t->slot[i];
	if (t->slot != NULL)
		sodium_memzero(t->slot, t->cap * sizeof(*t->slot));
	free(t->slot);
	*t = bigger;
	return 0;
}

/* Counts n more rows of attribute attr holding token (not 0). */
static int
tally_add(struct fetch_tally *t, uint32_t attr, uint64_t token, uint32_t n)
{
	struct tally_slot *sl;
	int r;

	if (2 * (t->n + 1) > t->cap && (r = tally_grow(t)) != 0)
		return r;
	sl = tally_find(t, attr, token);
	if (sl->token == 0) {
		*sl = (struct tally_slot){ token, 0, attr };
		t->n++;
	}
	sl->count = sl->count > UINT32_MAX - n ? UINT32_MAX : sl->count + n;
	return 0;
}

static uint32_t
tally_count(const struct fetch_tally *t, uint32_t attr, uint64_t token)
{
	return t->cap == 0 ? 0 : tally_find(t, attr, token)->count;
}

/* ------------------------------------------------------------- the rows */

/* A row in the spill: position, ref, created time, pseudonym, tokens. */
#define ROW_BYTES(n_attrs) (8 + CRYPTO_REF_BYTES + 8 + TOKEN_PSEUDONYM_BYTES + \
	8 * (n_attrs))

static void
row_pack(uint8_t *b, const struct fetch_row *row, const uint64_t *tokens,
    size_t na)
{
	memcpy(b, &row->pos.order, 8);
	memcpy(b + 8, row->pos.ref, CRYPTO_REF_BYTES);
	b += 8 + CRYPTO_REF_BYTES;
	memcpy(b, &row->created_ms, 8);
	memcpy(b + 8, row->pseudonym, TOKEN_PSEUDONYM_BYTES);
	memcpy(b + 8 + TOKEN_PSEUDONYM_BYTES, tokens, 8 * na);
}

static void
row_unpack(const uint8_t *b, struct fetch_row *row, uint64_t *tokens,
    size_t na)
{
	memcpy(&row->pos.order, b, 8);
	memcpy(row->pos.ref, b + 8, CRYPTO_REF_BYTES);
	b += 8 + CRYPTO_REF_BYTES;
	memcpy(&row->created_ms, b, 8);
	memcpy(row->pseudonym, b + 8, TOKEN_PSEUDONYM_BYTES);
	memcpy(tokens, b + 8 + TOKEN_PSEUDONYM_BYTES, 8 * na);
	row->gone = false;
}

/* Wipes and frees the arrays of a set of cap rows of n_attrs tokens. */
static void
free_rows(struct fetch_row *rows, uint64_t *tokens, size_t cap, size_t n_attrs)
{
	if (rows != NULL)
		sodium_memzero(rows, cap * sizeof(*rows));
	if (tokens != NULL)
		sodium_memzero(tokens, cap * n_attrs * sizeof(*tokens));
	free(rows);
	free(tokens);
}

/*
 * A set of this many rows had windows of megabytes. Once glibc has freed a
 * buffer that large, it serves the next ones from the arena of the thread
 * that asks and keeps them there when freed: each worker that served a
 * large stream kept its own (117 MiB after the streams of a 1M run,
 * docs/performance.md). Freeing such a set gives that memory back.
 */
#define TRIM_AFTER_ROWS 32768

void
fetch_set_free(struct fetch_set *set)
{
	bool big = set->n >= TRIM_AFTER_ROWS;

	free_rows(set->rows, set->tokens, set->cap, set->n_attrs);
	tally_free(set->tally);
	spill_close(set->spill);
	memset(set, 0, sizeof(*set));
	if (big)
		malloc_trim(0);
}

/*
 * Room for cap rows (at least what the set holds), the held rows moved to
 * the start, the old arrays wiped.
 */
static int
reserve(struct fetch_set *set, size_t cap)
{
	struct fetch_row *rows;
	uint64_t *tokens;

	if ((rows = calloc(cap, sizeof(*rows))) == NULL ||
	    (tokens = calloc(cap * set->n_attrs, sizeof(*tokens))) == NULL) {
		free(rows);
		return VAULT_ERR_NOMEM;
	}
	if (set->len > 0) {
		memcpy(rows, set->rows + set->off, set->len * sizeof(*rows));
		memcpy(tokens, set->tokens + set->off * set->n_attrs,
		    set->len * set->n_attrs * sizeof(*tokens));
	}
	free_rows(set->rows, set->tokens, set->cap, set->n_attrs);
	set->rows = rows;
	set->tokens = tokens;
	set->cap = cap;
	set->off = 0;
	return 0;
}

/* Moves the held rows to the start of the arrays, wiping where they were. */
static void
compact(struct fetch_set *set)
{
	size_t na = set->n_attrs, off = set->off;

	if (off == 0)
		return;
	memmove(set->rows, set->rows + off, set->len * sizeof(*set->rows));
	memmove(set->tokens, set->tokens + off * na, set->len * na *
	    sizeof(*set->tokens));
	/* What the rows left behind and nothing wrote over. */
	off = off < set->len ? set->len : off;
	sodium_memzero(set->rows + off, (set->off + set->len - off) *
	    sizeof(*set->rows));
	sodium_memzero(set->tokens + off * na, (set->off + set->len - off) *
	    na * sizeof(*set->tokens));
	set->off = 0;
}

/* Makes room for more rows held: a scan's doubles, a window's fits. */
static int
room_for(struct fetch_set *set, size_t more)
{
	size_t need = set->len + more, cap = set->cap ? set->cap : 1024;

	if (set->off + need <= set->cap)
		return 0;
	compact(set);
	if (need <= set->cap)
		return 0;
	if (set->spill != NULL)
		return reserve(set, need + need / 8);
	while (cap < need)
		cap *= 2;
	return reserve(set, cap);
}

/* Appends one row to those held. */
static int
hold_row(struct fetch_set *set, const struct fetch_row *row,
    const uint64_t *tokens)
{
	size_t at;
	int r;

	if ((r = room_for(set, 1)) != 0)
		return r;
	at = set->off + set->len;
	set->rows[at] = *row;
	memcpy(set->tokens + at * set->n_attrs, tokens,
	    set->n_attrs * sizeof(*tokens));
	set->len++;
	return 0;
}

/*
 * The bucket of stream position order: buckets cut [lo, lo + span] evenly,
 * so each holds a contiguous range of positions, in bucket order.
 */
static size_t
bucket_of(const struct fetch_set *set, uint64_t order)
{
	unsigned __int128 x;
	size_t b;

	if (order < set->lo)		/* never: the scan starts at lo */
		return 0;
	x = (unsigned __int128)(order - set->lo) * set->n_buckets;
	b = (size_t)(x / ((unsigned __int128)set->span + 1));
	return b < set->n_buckets ? b : set->n_buckets - 1;
}

/*
 * Takes a row of the scan: counts its category tokens, then keeps it
 * (held, or in its bucket), unless the scan only counts.
 */
static int
take_row(struct vault *v, const struct fetch_query *q, struct fetch_set *set,
    bool keep, const struct fetch_row *row, const uint64_t *tokens)
{
	uint8_t packed[ROW_BYTES(SCHEMA_MAX_ATTRS)];
	int r;

	for (size_t j = 0; j < q->n_attrs; j++) {
		if (v->schema->attrs[q->attrs[j]].feature != FEAT_CATEGORY ||
		    tokens[j] == 0)
			continue;
		if ((r = tally_add(set->tally, (uint32_t)q->attrs[j],
		    tokens[j], 1)) != 0)
			return r;
	}
	if (!keep)
		return 0;
	set->n++;
	if (set->spill == NULL)
		return hold_row(set, row, tokens);
	row_pack(packed, row, tokens, set->n_attrs);
	r = spill_add(set->spill, bucket_of(set, row->pos.order), packed);
	sodium_memzero(packed, ROW_BYTES(set->n_attrs));
	return r;
}

/* What a scan reads each consumer with: its values, and room to open them. */
struct row_work {
	struct value_list l;
	uint8_t *plain;		/* locked */
	size_t cap;
};

/* Reads the row of the consumer at ref (pseudonym and raw tokens), takes it. */
static int
read_row(struct vault *v, struct store_txn *txn, const struct fetch_query *q,
    const uint8_t *ref, uint64_t order, const struct store_val *crec,
    uint8_t flags, uint8_t *scratch, struct row_work *w,
    struct fetch_set *set, bool keep)
{
	const struct schema *s = v->schema;
	uint8_t *dek = scratch, *seed = dek + CRYPTO_KEY_BYTES;
	bool limited = (flags & CONSENT_LIMIT_SENSITIVE) &&
	    !s->purposes[q->purpose].essential;
	struct value_list *l = &w->l;
	uint8_t own_ref[CRYPTO_REF_BYTES], copy[RECORD_CONSUMER_BYTES];
	struct store_val cv = *crec;
	struct fetch_row row = { 0 };
	uint64_t tokens[SCHEMA_MAX_ATTRS];
	struct consumer_rec rec;
	int r;

	/* Copied: the reads below outlive a store_val (store.h, Lifetime). */
	memcpy(own_ref, ref, CRYPTO_REF_BYTES);
	ref = own_ref;
	if (cv.len == sizeof(copy)) {
		memcpy(copy, cv.data, sizeof(copy));
		cv.data = copy;
	}

	if ((r = record_parse_consumer(&cv, &rec)) != 0 ||
	    (r = record_unwrap_dek(v->kr, txn, ref, &rec, dek)) != 0 ||
	    (r = record_open_seed(dek, ref, &rec, seed)) != 0 ||
	    (r = consumer_values_load(v, txn, ref, &rec, l)) != 0 ||
	    (r = crypto_secret_reserve(&w->plain, &w->cap, l->need)) != 0 ||
	    (r = consumer_values_open(ref, &rec, dek, l, w->plain,
	    w->cap)) != 0)
		return r;
	/*
	 * Known only by its consent (consent before data): no row to send.
	 * Decided once the record opened: an empty record put in its place
	 * is DATA_LOSS, not a consumer left out.
	 */
	if (l->n == 0)
		return 0;
	tokenizer_pseudonym(seed, s->purposes[q->purpose].name, row.pseudonym);
	for (size_t j = 0; j < q->n_attrs; j++) {
		const struct attr_def *a = &s->attrs[q->attrs[j]];
		int e;

		tokens[j] = 0;
		if (limited && a->sensitive)
			continue;
		if ((e = record_values_find(l, a->name, strlen(a->name))) < 0)
			continue;
		/* Expired (retention.h): never released, as if unset. */
		if (a->retain_days != 0 && schema_expired(s, q->attrs[j],
		    l->e[e].updated_ms, store_now_ms()))
			continue;
		tokens[j] = tokenizer_token(v->tok, q->purpose, q->attrs[j],
		    (const char *)l->e[e].value, l->e[e].len, q->today_days);
	}
	row.pos.order = order;
	memcpy(row.pos.ref, ref, CRYPTO_REF_BYTES);
	row.created_ms = rec.created_ms;
	r = take_row(v, q, set, keep, &row, tokens);
	sodium_memzero(&row, sizeof(row));
	sodium_memzero(tokens, q->n_attrs * sizeof(*tokens));
	return r;
}

static int
cmp_pos(const struct fetch_pos *a, const struct fetch_pos *b)
{
	if (a->order != b->order)
		return a->order < b->order ? -1 : 1;
	return memcmp(a->ref, b->ref, CRYPTO_REF_BYTES);
}

/* Sorts row indexes by the rows' places (qsort_r's comparison). */
static int
cmp_idx(const void *a, const void *b, void *arg)
{
	const struct fetch_row *rows = arg;

	return cmp_pos(&rows[*(const uint32_t *)a].pos,
	    &rows[*(const uint32_t *)b].pos);
}

/*
 * A categorical token of the n rows at rows and tokens held by fewer than
 * k rows of the whole set, and of the meet's parts (both in the tally),
 * becomes OTHER.
 */
static void
suppress_rare(struct vault *v, const struct fetch_query *q,
    const struct fetch_set *set, uint64_t *tokens, size_t n)
{
	for (size_t j = 0; j < q->n_attrs; j++) {
		const struct attr_def *a = &v->schema->attrs[q->attrs[j]];
		uint64_t other;

		if (a->feature != FEAT_CATEGORY)
			continue;
		other = tokenizer_other(v->tok, q->purpose, q->attrs[j]);
		for (size_t i = 0; i < n; i++) {
			uint64_t *t = &tokens[i * set->n_attrs + j];

			if (*t != 0 && tally_count(set->tally,
			    (uint32_t)q->attrs[j], *t) < a->k)
				*t = other;
		}
	}
}

uint32_t
fetch_shard_of(uint64_t order, uint32_t count)
{
	return (uint32_t)(((unsigned __int128)order * count) >> 64);
}

uint64_t
fetch_shard_start(uint32_t idx, uint32_t count)
{
	unsigned __int128 x = ((unsigned __int128)idx << 64) + count - 1;

	return (uint64_t)(x / count);
}

static bool
sharded(const struct fetch_query *q)
{
	return q->shard_count > 1;
}

/* Whether q has an attribute whose tokens suppress_rare counts. */
static bool
has_category(const struct vault *v, const struct fetch_query *q)
{
	for (size_t j = 0; j < q->n_attrs; j++)
		if (v->schema->attrs[q->attrs[j]].feature == FEAT_CATEGORY)
			return true;
	return false;
}

/*
 * Puts the n rows at rows (their tokens at tokens, na a row) in stream
 * order (those at or before a page token's place were left out by the
 * scan, after_token). Sorts 4-byte indexes and moves the rows and their
 * tokens in place, one cycle of the permutation at a time, so the memory
 * is not doubled.
 */
static int
order_rows(struct fetch_row *rows, uint64_t *tokens, size_t n, size_t na)
{
	uint64_t *tmp_tokens;
	struct fetch_row tmp;
	uint32_t *idx;

	if (n == 0)
		return 0;
	if (n > UINT32_MAX)
		return VAULT_ERR_NOMEM;
	if ((idx = malloc(n * sizeof(*idx))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((tmp_tokens = calloc(na, sizeof(*tmp_tokens))) == NULL) {
		free(idx);
		return VAULT_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = (uint32_t)i;
	qsort_r(idx, n, sizeof(*idx), cmp_idx, rows);
	/* Place i takes row idx[i]; a place done is marked idx[i] = i. */
	for (size_t i = 0; i < n; i++) {
		size_t j = i;

		if (idx[i] == i)
			continue;
		tmp = rows[i];
		memcpy(tmp_tokens, tokens + i * na, na * sizeof(*tmp_tokens));
		while (idx[j] != i) {
			size_t from = idx[j];

			rows[j] = rows[from];
			memcpy(tokens + j * na, tokens + from * na,
			    na * sizeof(*tmp_tokens));
			idx[j] = (uint32_t)j;
			j = from;
		}
		rows[j] = tmp;
		memcpy(tokens + j * na, tmp_tokens, na * sizeof(*tmp_tokens));
		idx[j] = (uint32_t)j;
	}
	sodium_memzero(&tmp, sizeof(tmp));
	sodium_memzero(tmp_tokens, na * sizeof(*tmp_tokens));
	free(tmp_tokens);
	free(idx);
	return 0;
}

/*
 * How many of total consumers a scan of the shards in want (of count) may
 * read: about their share (positions are uniform), and an eighth more for
 * the spread (a shard larger still grows the set).
 */
static size_t
rows_expected(const bool *want, uint32_t count, size_t total)
{
	size_t share, wanted = 0;

	if (want == NULL)
		return total;
	for (uint32_t j = 0; j < count; j++)
		wanted += want[j];
	share = total / count * wanted;
	share += share / 8 + 64;
	return share < total ? share : total;
}

/* Whether the consumer at ref, at order, comes after the page token's place. */
static bool
after_token(const struct fetch_query *q, uint64_t order, const uint8_t *ref)
{
	struct fetch_pos p = { order, { 0 } };

	memcpy(p.ref, ref, CRYPTO_REF_BYTES);
	return cmp_pos(&p, &q->after) > 0;
}

/* Where a stream's temporary file goes: beside the audit journal. */
static const char *
spill_dir(const struct vault *v)
{
	return v->cfg->journal_dir != NULL ? v->cfg->journal_dir :
	    v->cfg->store_dir;
}

/*
 * Readies set for the rows of a scan of q expecting about expected rows:
 * held, when they fit in the memory a stream may hold, else in buckets of
 * the stream positions the scan can meet (q's shard, after its token).
 */
static int
plan(struct vault *v, const struct fetch_query *q, struct fetch_set *set,
    size_t expected)
{
	size_t per = (size_t)v->cfg->stream_memory_rows;
	uint64_t lo = 0, hi = UINT64_MAX;

	if (expected <= per)
		return expected > 0 ? reserve(set, expected) : 0;
	if (sharded(q)) {
		lo = fetch_shard_start(q->shard_index, q->shard_count);
		if (q->shard_index + 1 < q->shard_count)
			hi = fetch_shard_start(q->shard_index + 1, q->shard_count) - 1;
	}
	if (q->has_after && q->after.order > lo)
		lo = q->after.order;
	if (lo > hi)
		return 0;
	set->lo = lo;
	set->span = hi - lo;
	set->n_buckets = (expected + per - 1) / per;
	return spill_open(&set->spill, spill_dir(v), set->n_buckets,
	    ROW_BYTES(set->n_attrs),
	    (uint64_t)v->cfg->stream_spill_max_mb << 20);
}

/*
 * Scans for q: the row of every consumer after the page token whose
 * consent covers the purpose, of the shards marked in want (of
 * q->shard_count), or of all when want is NULL, each taken into set (kept
 * when keep, else only counted). Other shards' consumers are skipped
 * before anything is read for them.
 */
static int
scan_rows(struct vault *v, const struct fetch_query *q, const bool *want,
    struct fetch_set *set, bool keep)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	struct row_work *w;
	uint8_t *scratch, flags;
	size_t scanned = 0, total;
	uint64_t order;
	bool allowed;
	int rc, r;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((scratch = crypto_secret_alloc(RECORD_SCRATCH_BYTES)) == NULL) {
		free(w);
		return VAULT_ERR_NOMEM;
	}
	if ((r = store_read_begin_bulk(v->store, &txn)) != 0)
		goto out;
	if (keep && ((r = store_count(txn, STORE_CONSUMERS, &total)) != 0 ||
	    (r = plan(v, q, set, rows_expected(want, q->shard_count,
	    total))) != 0))
		goto out;
	if ((r = store_cursor_open(txn, STORE_CONSUMERS, &cur)) != 0)
		goto out;
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len != CRYPTO_REF_BYTES) {
			log_error("a consumer key has the wrong size");
			r = VAULT_ERR_STATE;
			goto out;
		}
		if (++scanned % CANCEL_POLL == 0 && q->cancelled != NULL &&
		    q->cancelled(q->cancel_arg)) {
			r = VAULT_ERR_CANCELLED;
			goto out;
		}
		order = tokenizer_order(v->tok, q->purpose, k.data);
		if (q->has_after && !after_token(q, order, k.data))
			continue;
		if (want != NULL && !want[fetch_shard_of(order, q->shard_count)])
			continue;
		if ((r = consent_allows(v, txn, k.data, q->purpose, &allowed,
		    &flags)) != 0)
			goto out;
		if (allowed && (r = read_row(v, txn, q, k.data, order, &val,
		    flags, scratch, w, set, keep)) != 0)
			goto out;
	}
	if (rc != VAULT_ERR_NOT_FOUND)
		r = rc;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	sodium_memzero(scratch, RECORD_SCRATCH_BYTES);
	crypto_secret_free(scratch);
	crypto_secret_free(w->plain);
	free(w);
	return r;
}

/*
 * Once counted: rows held are suppressed and put in order; rows in buckets
 * are, a bucket at a time, as they are taken in (take_bucket).
 */
static int
finish(struct vault *v, const struct fetch_query *q, struct fetch_set *set)
{
	if (set->spill != NULL)
		return 0;
	suppress_rare(v, q, set, set->tokens, set->len);
	return order_rows(set->rows, set->tokens, set->len, set->n_attrs);
}

/*
 * What shard calls of q must share to meet: the same asker (who, purpose,
 * dataset, attributes), day (age bands) and starting place, so they count
 * alike.
 */
static void
meet_key(const struct fetch_query *q, uint8_t key[SHARDMEET_KEY_BYTES])
{
	crypto_generichash_state st;
	uint8_t b[8 + 8 + CRYPTO_REF_BYTES] = { 0 };

	store_put_u64(b, (uint64_t)q->today_days);
	if (q->has_after) {
		store_put_u64(b + 8, q->after.order);
		memcpy(b + 16, q->after.ref, CRYPTO_REF_BYTES);
	}
	crypto_generichash_init(&st, NULL, 0, SHARDMEET_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)"vault shard meet", 17);
	crypto_generichash_update(&st, q->asker, FETCH_ASKER_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)&q->has_after, 1);
	crypto_generichash_update(&st, b, sizeof(b));
	crypto_generichash_final(&st, key, SHARDMEET_KEY_BYTES);
}

/* How long a shard call waits for the others of its meet, at most. */
#define MEET_WAIT_MIN_MS 200
#define MEET_WAIT_MAX_MS 10000

/* A shard's part: the counts of its own rows, taken before any other's. */
static int
own_part(const struct fetch_set *set, struct shardmeet_part *part)
{
	const struct fetch_tally *t = set->tally;
	size_t n = 0;

	part->n = 0;
	if (t->n == 0)
		return 0;
	if ((part->counts = calloc(t->n, sizeof(*part->counts))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slot[i].token != 0)
			part->counts[n++] = (struct shardmeet_count){
			    t->slot[i].token, t->slot[i].count, t->slot[i].attr };
	part->n = n;
	return 0;
}

/* Adds the counts of a part posted by another call of the meet. */
static int
tally_part(struct fetch_set *set, const struct shardmeet_part *p)
{
	int r;

	for (size_t i = 0; i < p->n; i++)
		if ((r = tally_add(set->tally, p->counts[i].attr,
		    p->counts[i].token, p->counts[i].count)) != 0)
			return r;
	return 0;
}

/*
 * The snapshot of a shard of a query with category attributes: its own
 * rows, suppressed with counts over every shard's (shardmeet.h). The other
 * shards' counts come from the calls of the meet that posted them; those
 * of shards nobody posted are read here, their category tokens only.
 */
static int
snapshot_shared(struct vault *v, const struct fetch_query *q,
    struct fetch_set *set)
{
	uint32_t count = q->shard_count, idx = q->shard_index;
	struct shardmeet_part own = { 0 }, *parts;
	struct fetch_query q2 = *q;
	struct shardmeet *m = NULL;
	uint8_t key[SHARDMEET_KEY_BYTES];
	int cats[SCHEMA_MAX_ATTRS];
	size_t n_cat = 0;
	long long t0 = time_monotonic_ms(), wait;
	bool *want, *posted, missing = false;
	int r;

	for (size_t j = 0; j < q->n_attrs; j++)
		if (v->schema->attrs[q->attrs[j]].feature == FEAT_CATEGORY)
			cats[n_cat++] = q->attrs[j];
	want = calloc(count, sizeof(*want));
	posted = calloc(count, sizeof(*posted));
	parts = calloc(count, sizeof(*parts));
	meet_key(q, key);
	if (want == NULL || posted == NULL || parts == NULL ||
	    (r = shardmeet_join(v, key, count, idx, MEET_WAIT_MAX_MS,
	    &m)) != 0) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	want[idx] = true;
	if ((r = scan_rows(v, q, want, set, true)) != 0 ||
	    (r = own_part(set, &own)) != 0)
		goto out;
	shardmeet_post(m, idx, own);
	/* Calls of the meet that started with this one read about as long. */
	wait = 2 * (time_monotonic_ms() - t0);
	wait = wait < MEET_WAIT_MIN_MS ? MEET_WAIT_MIN_MS :
	    wait > MEET_WAIT_MAX_MS ? MEET_WAIT_MAX_MS : wait;
	if ((r = shardmeet_wait(m, idx, time_monotonic_ms() + wait,
	    q->cancelled, q->cancel_arg)) != 0)
		goto out;
	shardmeet_parts(m, posted, parts);
	for (uint32_t j = 0; j < count; j++) {
		want[j] = !posted[j];
		missing |= want[j];
		if (j != idx && posted[j] && (r = tally_part(set,
		    &parts[j])) != 0)
			goto out;
	}
	if (missing) {
		q2.attrs = cats;
		q2.n_attrs = n_cat;
		if ((r = scan_rows(v, &q2, want, set, false)) != 0)
			goto out;
	}
	r = finish(v, q, set);
out:
	if (m != NULL)
		shardmeet_leave(m, idx);
	free(want);
	free(posted);
	free(parts);
	return r;
}

int
fetch_snapshot(struct vault *v, const struct fetch_query *q,
    struct fetch_set *set)
{
	bool *want = NULL;
	int r;

	fetch_set_free(set);
	set->n_attrs = q->n_attrs ? q->n_attrs : 1;
	if ((set->tally = calloc(1, sizeof(*set->tally))) == NULL)
		r = VAULT_ERR_NOMEM;
	else if (sharded(q) && has_category(v, q))
		r = snapshot_shared(v, q, set);
	else if (sharded(q) && (want = calloc(q->shard_count,
	    sizeof(*want))) == NULL)
		r = VAULT_ERR_NOMEM;
	else {
		/* Nothing counted, or every row counted: only these are read. */
		if (want != NULL)
			want[q->shard_index] = true;
		if ((r = scan_rows(v, q, want, set, true)) == 0)
			r = finish(v, q, set);
		free(want);
	}
	if (r != 0)
		fetch_set_free(set);
	return r;
}

/* Appends a block of a bucket's rows to those held (spill_read's callback). */
static int
take_block(void *arg, const void *rows, size_t n)
{
	struct fetch_set *set = arg;
	const uint8_t *b = rows;
	size_t rb = ROW_BYTES(set->n_attrs), na = set->n_attrs;

	for (size_t i = 0; i < n; i++, b += rb) {
		size_t at = set->off + set->len;

		row_unpack(b, &set->rows[at], set->tokens + at * na, na);
		set->len++;
	}
	return 0;
}

/*
 * Takes in the next bucket: its rows held, in order, suppressed. On an
 * error, the rows taken so far are wiped and let go of again.
 */
static int
take_bucket(struct vault *v, const struct fetch_query *q, struct fetch_set *set)
{
	size_t b = set->next_bucket, c = spill_count(set->spill, b);
	size_t first, na = set->n_attrs;
	struct fetch_row *rows;
	uint64_t *tokens;
	int r;

	if ((r = room_for(set, c)) != 0)
		return r;
	first = set->off + set->len;
	rows = set->rows + first;
	tokens = set->tokens + first * na;
	if ((r = spill_read(set->spill, b, take_block, set)) == 0) {
		suppress_rare(v, q, set, tokens, c);
		r = order_rows(rows, tokens, c, na);
	}
	if (r != 0) {
		size_t taken = set->off + set->len - first;

		sodium_memzero(rows, taken * sizeof(*rows));
		sodium_memzero(tokens, taken * na * sizeof(*tokens));
		set->len -= taken;
		return r;
	}
	set->next_bucket++;
	return 0;
}

/*
 * Lets go of the rows held before row from (sent: a stream goes forward):
 * wiped, and their room taken again when the arrays next fill.
 */
static void
let_go(struct fetch_set *set, size_t from)
{
	size_t drop = from - set->base, na = set->n_attrs;

	if (drop > set->len)
		drop = set->len;
	if (drop == 0)
		return;
	sodium_memzero(set->rows + set->off, drop * sizeof(*set->rows));
	sodium_memzero(set->tokens + set->off * na, drop * na *
	    sizeof(*set->tokens));
	set->off += drop;
	set->len -= drop;
	set->base += drop;
	if (set->len == 0)
		set->off = 0;
}

/*
 * Holds rows [from, to) of set (to at most set->n), and lets go of those
 * before from. A row let go of is never taken in again.
 */
static int
hold(struct vault *v, const struct fetch_query *q, struct fetch_set *set,
    size_t from, size_t to)
{
	int r;

	if (from < set->base)
		return VAULT_ERR_INTERNAL;
	if (to > set->n)
		to = set->n;
	if (set->spill == NULL)
		return 0;
	let_go(set, from);
	while (set->base + set->len < to &&
	    set->next_bucket < set->n_buckets) {
		if ((r = take_bucket(v, q, set)) != 0)
			return r;
		let_go(set, from);
	}
	return 0;
}

/*
 * Whether the consumer record crec is still the row's consumer: a ref is a
 * keyed hash of the id, so a consumer deleted and put again has the same
 * ref, but a new record (new seed, new created time).
 */
static bool
same_consumer(const struct store_val *crec, const struct fetch_row *row)
{
	struct consumer_rec rec;

	return record_parse_consumer(crec, &rec) == 0 &&
	    rec.created_ms == row->created_ms;
}

int
fetch_recheck(struct vault *v, const struct fetch_query *q,
    struct fetch_set *set, size_t from, size_t n)
{
	const struct schema *s = v->schema;
	struct store_txn *txn = NULL;
	uint8_t flags;
	bool allowed;
	int rc, r;

	if ((r = hold(v, q, set, from, from + n)) != 0 ||
	    (r = store_read_begin(v->store, &txn)) != 0)
		return r;
	for (size_t i = from; i < from + n && i < set->n; i++) {
		struct fetch_row *row = fetch_row_at(set, i);
		struct store_val k = { CRYPTO_REF_BYTES, row->pos.ref }, val;

		if (row->gone)
			continue;
		rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val);
		if (rc == VAULT_ERR_NOT_FOUND || (rc == 0 && !same_consumer(&val, row))) {
			row->gone = true;
			continue;
		}
		if (rc != 0) {
			r = rc;
			break;
		}
		if ((r = consent_allows(v, txn, row->pos.ref, q->purpose, &allowed,
		    &flags)) != 0)
			break;
		row->gone = !allowed;
		if (!(flags & CONSENT_LIMIT_SENSITIVE) || s->purposes[q->purpose].essential)
			continue;
		for (size_t j = 0; j < q->n_attrs; j++)
			if (s->attrs[q->attrs[j]].sensitive)
				fetch_tokens_at(set, i)[j] = 0;
	}
	store_read_end(txn);
	return r;
}

struct lineage_job {
	struct vault *v;
	uint32_t dataset;
	struct fetch_set *set;
	size_t from, n;
};

/*
 * Whether every key from first on goes after the last key of lineage_rows,
 * so the rows can be appended (LMDB fills each page then, instead of
 * splitting it in half). Not on PostgreSQL, whose tables are not B-trees
 * we fill.
 */
static int
at_end(struct store_txn *txn, const uint8_t first[LINEAGE_KEY_BYTES],
    bool *append)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc;

	*append = false;
	if (!store_in_process(store_txn_store(txn)))
		return 0;
	if ((rc = store_cursor_open(txn, STORE_LINEAGE_ROWS, &cur)) != 0)
		return rc;
	rc = store_cursor_get(cur, &k, &val, STORE_LAST);
	if (rc == VAULT_ERR_NOT_FOUND)
		*append = true;
	else if (rc == 0) {
		size_t n = k.len < LINEAGE_KEY_BYTES ? k.len : LINEAGE_KEY_BYTES;
		int c = memcmp(k.data, first, n);

		/* Bytewise, a shorter key first (store.h). */
		*append = c < 0 || (c == 0 && k.len < LINEAGE_KEY_BYTES);
	}
	store_cursor_close(cur);
	return rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}

static int
lineage_apply(struct store_txn *txn, void *arg)
{
	struct lineage_job *job = arg;
	uint8_t key[LINEAGE_KEY_BYTES], last[LINEAGE_KEY_BYTES];
	bool append = false, any = false, ahead;
	int rc, r;

	for (size_t i = job->from; i < job->from + job->n; i++) {
		struct fetch_row *row = fetch_row_at(job->set, i);
		struct store_val k = { CRYPTO_REF_BYTES, row->pos.ref }, v;

		if (row->gone)
			continue;
		/*
		 * Deleted since the snapshot: the row is not sent (its page's
		 * re-check, before or after this, finds it gone too). This runs
		 * in the writer, in order with deletions, so a row that leaves
		 * always has its lineage for a later deletion to find.
		 */
		rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &v);
		if (rc == VAULT_ERR_NOT_FOUND || (rc == 0 && !same_consumer(&v,
		    row))) {
			row->gone = true;
			continue;
		}
		if (rc != 0)
			return rc;
		lineage_key(job->v, key, job->dataset, row->pos.order,
		    row->pos.ref);
		if (!any && (r = at_end(txn, key, &append)) != 0)
			return r;
		/*
		 * Rows ascend by position; two at one position go by ref, their
		 * tags maybe not: such a row is put, not appended.
		 */
		ahead = !any || memcmp(key, last, sizeof(key)) > 0;
		rc = store_put(txn, STORE_LINEAGE_ROWS, key, sizeof(key), key, 0,
		    append && ahead ? STORE_APPEND : STORE_NOOVERWRITE);
		if (rc != 0 && rc != VAULT_ERR_EXISTS)
			return rc;
		if (ahead)
			memcpy(last, key, sizeof(key));
		any = true;
	}
	return 0;
}

int
fetch_record_lineage(struct vault *v, uint32_t dataset,
    struct fetch_set *set, size_t from, size_t n)
{
	struct lineage_job job = { v, dataset, set, from, n };

	if (n == 0)
		return 0;
	return writer_submit(v->wr, lineage_apply, &job);
}

int
fetch_page(struct vault *v, const struct fetch_query *q, uint32_t dataset,
    struct fetch_set *set, size_t from, size_t n)
{
	size_t start = 0, ahead, to = 0;
	bool record = from + n > set->lineage_to;
	int r;

	/*
	 * Never more ahead than has left: a stream that stops early leaves
	 * lineage for at most as many unsent rows as it sent.
	 */
	if (record) {
		ahead = from > n ? from : n;
		if (ahead > FETCH_LINEAGE_AHEAD)
			ahead = FETCH_LINEAGE_AHEAD > n ? FETCH_LINEAGE_AHEAD : n;
		start = from > set->lineage_to ? from : set->lineage_to;
		to = from + ahead > set->n ? set->n : from + ahead;
	}
	if ((r = hold(v, q, set, from, to > from + n ? to : from + n)) != 0 ||
	    (r = fetch_recheck(v, q, set, from, n)) != 0)
		return r;
	if (!record)
		return 0;
	if ((r = fetch_record_lineage(v, dataset, set, start, to - start)) != 0)
		return r;
	set->lineage_to = to;
	return 0;
}
