#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/consent.h"
#include "engine/consumer.h"
#include "engine/fetch.h"
#include "engine/lineage.h"
#include "engine/shardmeet.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "engine/record.h"

#define CANCEL_POLL 1024

int64_t
fetch_today(void)
{
	return (int64_t)(store_now_ms() / 86400000ULL);
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

void
fetch_set_free(struct fetch_set *set)
{
	free_rows(set->rows, set->tokens, set->cap, set->n_attrs);
	memset(set, 0, sizeof(*set));
}

/* Room for cap rows (at least what the set holds), the old arrays wiped. */
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
	if (set->n > 0) {
		memcpy(rows, set->rows, set->n * sizeof(*rows));
		memcpy(tokens, set->tokens, set->n * set->n_attrs * sizeof(*tokens));
	}
	free_rows(set->rows, set->tokens, set->cap, set->n_attrs);
	set->rows = rows;
	set->tokens = tokens;
	set->cap = cap;
	return 0;
}

/* What a scan reads each consumer with: its values, and room to open them. */
struct row_work {
	struct value_list l;
	uint8_t *plain;		/* locked */
	size_t cap;
};

/* Appends the row of the consumer at ref: pseudonym and raw tokens. */
static int
read_row(struct vault *v, struct store_txn *txn, const struct fetch_query *q,
    const uint8_t *ref, uint64_t order, const struct store_val *crec,
    uint8_t flags, uint8_t *scratch, struct row_work *w,
    struct fetch_set *set)
{
	const struct schema *s = v->schema;
	uint8_t *dek = scratch, *seed = dek + CRYPTO_KEY_BYTES;
	bool limited = (flags & CONSENT_LIMIT_SENSITIVE) &&
	    !s->purposes[q->purpose].essential;
	struct value_list *l = &w->l;
	uint8_t own_ref[CRYPTO_REF_BYTES], copy[RECORD_CONSUMER_BYTES];
	struct store_val cv = *crec;
	struct fetch_row *row;
	struct consumer_rec rec;
	uint64_t *tokens;
	int r;

	/* Copied: the reads below outlive a store_val (store.h, Lifetime). */
	memcpy(own_ref, ref, CRYPTO_REF_BYTES);
	ref = own_ref;
	if (cv.len == sizeof(copy)) {
		memcpy(copy, cv.data, sizeof(copy));
		cv.data = copy;
	}

	if (set->n == set->cap &&
	    (r = reserve(set, set->cap ? set->cap * 2 : 1024)) != 0)
		return r;
	row = &set->rows[set->n];
	tokens = set->tokens + set->n * set->n_attrs;
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
	tokenizer_pseudonym(seed, s->purposes[q->purpose].name, row->pseudonym);
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
	row->pos.order = order;
	memcpy(row->pos.ref, ref, CRYPTO_REF_BYTES);
	row->created_ms = rec.created_ms;
	row->gone = false;
	set->n++;
	return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
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

/* How many of the n sorted tokens equal t. */
static size_t
count_of(const uint64_t *sorted, size_t n, uint64_t t)
{
	size_t lo = 0, hi = n, first;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sorted[mid] < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sorted[mid] <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - first;
}

/*
 * A categorical token held by fewer than k rows of the set and of more
 * (the category columns, in q's order, of rows released to other shards)
 * becomes OTHER.
 */
static int
suppress_rare(struct vault *v, const struct fetch_query *q,
    struct fetch_set *set, const struct shardmeet_part *more, size_t n_more)
{
	size_t cap = set->n, c = 0;
	uint64_t *col;

	if (set->n == 0)
		return 0;
	for (size_t i = 0; i < n_more; i++)
		cap += more[i].n;
	if ((col = malloc(cap * sizeof(*col))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t j = 0; j < q->n_attrs; j++) {
		const struct attr_def *a = &v->schema->attrs[q->attrs[j]];
		uint64_t other = tokenizer_other(v->tok, q->purpose, q->attrs[j]);
		size_t m = 0;

		if (a->feature != FEAT_CATEGORY)
			continue;
		for (size_t i = 0; i < set->n; i++)
			if (set->tokens[i * set->n_attrs + j] != 0)
				col[m++] = set->tokens[i * set->n_attrs + j];
		for (size_t i = 0; i < n_more; i++)
			for (size_t r = 0; r < more[i].n; r++)
				if (more[i].tokens[r * more[i].n_cat + c] != 0)
					col[m++] = more[i].tokens[r * more[i].n_cat + c];
		c++;
		qsort(col, m, sizeof(*col), cmp_u64);
		for (size_t i = 0; i < set->n; i++) {
			uint64_t *t = &set->tokens[i * set->n_attrs + j];

			if (*t != 0 && count_of(col, m, *t) < a->k)
				*t = other;
		}
	}
	free(col);
	return 0;
}

uint32_t
fetch_shard_of(uint64_t order, uint32_t count)
{
	return (uint32_t)(((unsigned __int128)order * count) >> 64);
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
 * Puts the rows in stream order (those at or before a page token's place
 * were left out by the scan, after_token). Sorts 4-byte indexes and moves the rows and their tokens in place, one
 * cycle of the permutation at a time, so the set's memory is not doubled
 * (at 100k consumers a copy of both arrays was most of the daemon's peak).
 */
static int
order_rows(struct fetch_set *set)
{
	size_t na = set->n_attrs;
	uint64_t *tmp_tokens;
	struct fetch_row tmp;
	uint32_t *idx;

	if (set->n == 0)
		return 0;
	if (set->n > UINT32_MAX)
		return VAULT_ERR_NOMEM;
	if ((idx = malloc(set->n * sizeof(*idx))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((tmp_tokens = calloc(na, sizeof(*tmp_tokens))) == NULL) {
		free(idx);
		return VAULT_ERR_NOMEM;
	}
	for (size_t i = 0; i < set->n; i++)
		idx[i] = (uint32_t)i;
	qsort_r(idx, set->n, sizeof(*idx), cmp_idx, set->rows);
	/* Place i takes row idx[i]; a place done is marked idx[i] = i. */
	for (size_t i = 0; i < set->n; i++) {
		size_t j = i;

		if (idx[i] == i)
			continue;
		tmp = set->rows[i];
		memcpy(tmp_tokens, set->tokens + i * na, na * sizeof(*tmp_tokens));
		while (idx[j] != i) {
			size_t from = idx[j];

			set->rows[j] = set->rows[from];
			memcpy(set->tokens + j * na, set->tokens + from * na,
			    na * sizeof(*tmp_tokens));
			idx[j] = (uint32_t)j;
			j = from;
		}
		set->rows[j] = tmp;
		memcpy(set->tokens + j * na, tmp_tokens, na * sizeof(*tmp_tokens));
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

/*
 * Appends to set (its n_attrs that of q) the row of every consumer after
 * the page token whose consent covers the purpose, of the shards marked in
 * want (of q->shard_count), or of all when want is NULL. Other shards'
 * consumers are skipped before anything is read for them.
 */
static int
scan_rows(struct vault *v, const struct fetch_query *q, const bool *want,
    struct fetch_set *set)
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
	/* Room for every row read at once: growing by doubling copies. */
	if ((r = store_count(txn, STORE_CONSUMERS, &total)) != 0)
		goto out;
	total = rows_expected(want, q->shard_count, total);
	if (total > 0 && (r = reserve(set, total)) != 0)
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
		    flags, scratch, w, set)) != 0)
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
	struct shardmeet_part own = { 0 }, *parts, *more;
	struct fetch_set rest = { 0 };
	struct fetch_query q2 = *q;
	struct shardmeet *m = NULL;
	uint8_t key[SHARDMEET_KEY_BYTES];
	int cats[SCHEMA_MAX_ATTRS];
	size_t pos[SCHEMA_MAX_ATTRS], n_cat = 0, n_more = 0;
	long long t0 = time_monotonic_ms(), wait;
	bool *want, *posted, missing = false;
	int r;

	for (size_t j = 0; j < q->n_attrs; j++)
		if (v->schema->attrs[q->attrs[j]].feature == FEAT_CATEGORY) {
			cats[n_cat] = q->attrs[j];
			pos[n_cat++] = j;
		}
	want = calloc(count, sizeof(*want));
	posted = calloc(count, sizeof(*posted));
	parts = calloc(count, sizeof(*parts));
	more = calloc(count + 1, sizeof(*more));
	meet_key(q, key);
	if (want == NULL || posted == NULL || parts == NULL || more == NULL ||
	    (r = shardmeet_join(v, key, count, idx, MEET_WAIT_MAX_MS,
	    &m)) != 0) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	want[idx] = true;
	if ((r = scan_rows(v, q, want, set)) != 0)
		goto out;
	own.n = set->n;
	own.n_cat = n_cat;
	if (own.n > 0 &&
	    (own.tokens = malloc(own.n * n_cat * sizeof(*own.tokens))) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < own.n; i++)
		for (size_t c = 0; c < n_cat; c++)
			own.tokens[i * n_cat + c] =
			    set->tokens[i * set->n_attrs + pos[c]];
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
		if (j != idx && posted[j])
			more[n_more++] = parts[j];
	}
	if (missing) {
		q2.attrs = cats;
		q2.n_attrs = n_cat;
		rest.n_attrs = n_cat;
		if ((r = scan_rows(v, &q2, want, &rest)) != 0)
			goto out;
		more[n_more++] = (struct shardmeet_part){ rest.tokens, rest.n,
		    n_cat };
	}
	if ((r = suppress_rare(v, q, set, more, n_more)) == 0)
		r = order_rows(set);
out:
	if (m != NULL)
		shardmeet_leave(m, idx);
	fetch_set_free(&rest);
	free(want);
	free(posted);
	free(parts);
	free(more);
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
	if (sharded(q) && has_category(v, q))
		r = snapshot_shared(v, q, set);
	else if (sharded(q) && (want = calloc(q->shard_count,
	    sizeof(*want))) == NULL)
		r = VAULT_ERR_NOMEM;
	else {
		/* Nothing counted, or every row counted: only these are read. */
		if (want != NULL)
			want[q->shard_index] = true;
		if ((r = scan_rows(v, q, want, set)) == 0 &&
		    (r = suppress_rare(v, q, set, NULL, 0)) == 0)
			r = order_rows(set);
		free(want);
	}
	if (r != 0)
		fetch_set_free(set);
	return r;
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

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	for (size_t i = from; i < from + n && i < set->n; i++) {
		struct fetch_row *row = &set->rows[i];
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
				set->tokens[i * set->n_attrs + j] = 0;
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
		struct fetch_row *row = &job->set->rows[i];
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
	size_t start, ahead, to;
	int r;

	if ((r = fetch_recheck(v, q, set, from, n)) != 0)
		return r;
	if (from + n <= set->lineage_to)
		return 0;
	/*
	 * Never more ahead than has left: a stream that stops early leaves
	 * lineage for at most as many unsent rows as it sent.
	 */
	ahead = from > n ? from : n;
	if (ahead > FETCH_LINEAGE_AHEAD)
		ahead = FETCH_LINEAGE_AHEAD > n ? FETCH_LINEAGE_AHEAD : n;
	start = from > set->lineage_to ? from : set->lineage_to;
	to = from + ahead > set->n ? set->n : from + ahead;
	if ((r = fetch_record_lineage(v, dataset, set, start, to - start)) != 0)
		return r;
	set->lineage_to = to;
	return 0;
}
