/*
 * The PostgreSQL backend's cursors: batches fetched ahead, a position kept
 * as a copy, a write generation that drops stale batches (store_pg.c has
 * the design).
 */
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "store/store_pg_int.h"

void
pg_cursor_free(struct pg_cursor *cur)
{
	PQclear(cur->batch);
	free(cur);
}

int
pg_cursor_open(struct store_txn *txn, enum store_space sp,
    struct store_cursor **out)
{
	struct pg_txn *t = pg_txn(txn);
	struct pg_cursor *cur;

	*out = NULL;
	if ((cur = calloc(1, sizeof(*cur))) == NULL)
		return VAULT_ERR_NOMEM;
	cur->base.txn = txn;
	cur->t = t;
	cur->sp = sp;
	cur->dup = store_space_dup(sp);
	cur->row = -1;
	cur->limit = BATCH_MIN;
	cur->next = t->cursors;
	t->cursors = cur;
	*out = &cur->base;
	return 0;
}

void
pg_cursor_close(struct store_cursor *c)
{
	struct pg_cursor *cur = pg_cursor(c), **pp;

	if (cur == NULL)
		return;
	for (pp = &cur->t->cursors; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cur) {
			*pp = cur->next;
			break;
		}
	/* The values it returned live on with the transaction's. */
	if (cur->batch != NULL && cur->gen == cur->t->top->gen) {
		pg_keep_push(&cur->t->top->c->keep, cur->batch);
		cur->batch = NULL;
	}
	pg_cursor_free(cur);
}

/* Drops a batch a write made stale (its values died with the write). */
static bool
batch_live(struct pg_cursor *cur)
{
	if (cur->batch != NULL && cur->gen != cur->t->top->gen) {
		PQclear(cur->batch);
		cur->batch = NULL;
		cur->row = -1;
	}
	return cur->batch != NULL;
}

/*
 * Fetches a batch with statement s (the kv one; bounds k, v) in direction
 * dir; the cursor is then before its first row (row -1). The old batch is
 * kept for the values it returned.
 */
static int
fetch(struct pg_cursor *cur, enum stmt s, const void *k, size_t klen,
    const void *v, size_t vlen, int dir)
{
	struct args a = { .sp = cur->sp, .k = k, .klen = klen, .v = v,
	    .vlen = vlen, .limit = cur->limit };
	PGresult *res;
	int r;

	if (cur->dup && v == NULL && k != NULL) {
		a.v = "";		/* (k, '') sorts before every (k, value) */
		a.vlen = 0;
	}
	if ((res = pg_run(cur->t, pg_stmt_for(cur->sp, s), &a, "cursor",
	    &r)) == NULL)
		return r;
	if (batch_live(cur))
		pg_keep_push(&cur->t->top->c->keep, cur->batch);
	cur->batch = res;
	cur->gen = cur->t->top->gen;
	cur->nrows = PQntuples(res);
	cur->dir = dir;
	cur->complete = cur->nrows < cur->limit;
	cur->row = -1;
	/* A walk reads ever larger batches; a lookup stays small. */
	cur->limit = cur->limit * 4 > BATCH_MAX ? BATCH_MAX : cur->limit * 4;
	return 0;
}

static const uint8_t *
cell(struct pg_cursor *cur, int row, int col, size_t *len)
{
	*len = (size_t)PQgetlength(cur->batch, row, col);
	return (const uint8_t *)PQgetvalue(cur->batch, row, col);
}

/* Stands on batch row row: its copy becomes the position. */
static int
stand(struct pg_cursor *cur, int row, struct store_val *key,
    struct store_val *val)
{
	size_t klen, vlen;
	const uint8_t *k = cell(cur, row, 0, &klen), *v = cell(cur, row, 1,
	    &vlen);

	if (klen > STORE_KEY_MAX || (cur->dup && vlen > STORE_KEY_MAX)) {
		log_error("cursor (%s): an entry longer than a store allows",
		    store_space_name(cur->sp));
		return VAULT_ERR_STORE;
	}
	memcpy(cur->k, k, klen);
	cur->klen = klen;
	if (cur->dup) {
		memcpy(cur->v, v, vlen);
		cur->vlen = vlen;
	}
	cur->row = row;
	cur->has_pos = true;
	cur->deleted = false;
	key->data = k;
	key->len = klen;
	val->data = v;
	val->len = vlen;
	return 0;
}

/* The batch row of the entry next to the position in direction d. */
static int
advance(struct pg_cursor *cur, int d, int *row)
{
	int r;

	if (!cur->has_pos) {
		cur->limit = BATCH_MIN;
		if ((r = fetch(cur, d > 0 ? KV_FIRST : KV_LAST, NULL, 0, NULL, 0,
		    d)) != 0)
			return r;
	} else if (batch_live(cur) && cur->row >= 0) {
		int nr = cur->row + (d == cur->dir ? 1 : -1);

		if (nr >= 0 && nr < cur->nrows) {
			*row = nr;
			return 0;
		}
		if (nr == cur->nrows && cur->complete)
			return VAULT_ERR_NOT_FOUND;
		if ((r = fetch(cur, d > 0 ? KV_GT : KV_LT, cur->k, cur->klen,
		    cur->dup ? cur->v : NULL, cur->vlen, d)) != 0)
			return r;
	} else if ((r = fetch(cur, d > 0 ? KV_GT : KV_LT, cur->k, cur->klen,
	    cur->dup ? cur->v : NULL, cur->vlen, d)) != 0) {
		return r;
	}
	if (cur->nrows == 0)
		return VAULT_ERR_NOT_FOUND;
	*row = 0;
	return 0;
}

static bool
same(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * SEEK, SET, GET_BOTH, SEEK_DUP: the first entry >= (key, val) (val NULL:
 * the key's first), which must match the key (exact) and the value
 * (exact_v).
 */
static int
seek(struct pg_cursor *cur, struct store_val *key, struct store_val *val,
    bool with_v, bool exact, bool exact_v)
{
	const void *k = key->data, *v = with_v ? val->data : NULL;
	size_t klen = key->len, vlen = with_v ? val->len : 0, len;
	const uint8_t *p;
	int r;

	if ((r = pg_check_len(klen, cur->sp, "cursor", "key")) != 0)
		return r;
	cur->limit = BATCH_MIN;
	if ((r = fetch(cur, KV_GE, k, klen, v, vlen, 1)) != 0)
		return r;
	if (cur->nrows == 0)
		return VAULT_ERR_NOT_FOUND;
	p = cell(cur, 0, 0, &len);
	if (exact && !same(p, len, k, klen))
		return VAULT_ERR_NOT_FOUND;
	p = cell(cur, 0, 1, &len);
	if (exact_v && !same(p, len, v, vlen))
		return VAULT_ERR_NOT_FOUND;
	return stand(cur, 0, key, val);
}

/* The entry the cursor is on; after a delete, the one that followed. */
static int
current(struct pg_cursor *cur, struct store_val *key, struct store_val *val)
{
	struct store_val k = { cur->klen, cur->k }, v = { cur->vlen, cur->v };
	int row, r;

	if (!cur->has_pos)
		return VAULT_ERR_NOT_FOUND;
	if (cur->deleted) {
		if ((r = advance(cur, 1, &row)) != 0)
			return r;
		return stand(cur, row, key, val);
	}
	if (batch_live(cur) && cur->row >= 0)
		return stand(cur, cur->row, key, val);
	/* Read again after a write: seek reads k and v before moving. */
	if ((r = seek(cur, &k, &v, cur->dup, true, cur->dup)) != 0)
		return r;
	*key = k;
	*val = v;
	return 0;
}

static int
next_dup(struct pg_cursor *cur, struct store_val *key, struct store_val *val)
{
	size_t len;
	const uint8_t *p;
	int row, r;

	if (!cur->has_pos || cur->deleted)
		return VAULT_ERR_NOT_FOUND;
	if ((r = advance(cur, 1, &row)) != 0)
		return r;
	p = cell(cur, row, 0, &len);
	/* Another key: the cursor stays on its entry (a new batch left it
	 * detached, row -1, and CURRENT reads it again). */
	if (!same(p, len, cur->k, cur->klen))
		return VAULT_ERR_NOT_FOUND;
	return stand(cur, row, key, val);
}

int
pg_cursor_get(struct store_cursor *c, struct store_val *key,
    struct store_val *val, enum store_move op)
{
	struct pg_cursor *cur = pg_cursor(c);
	int row, r;

	if (!cur->dup && (op == STORE_NEXT_DUP || op == STORE_GET_BOTH ||
	    op == STORE_SEEK_DUP)) {
		log_error("cursor (%s): a dup move in a space without dups",
		    store_space_name(cur->sp));
		return VAULT_ERR_STORE;
	}
	switch (op) {
	case STORE_FIRST:
	case STORE_LAST:
		cur->has_pos = false;
		/* FALLTHROUGH */
	case STORE_NEXT:
	case STORE_PREV:
		if ((r = advance(cur, op == STORE_FIRST || op == STORE_NEXT ?
		    1 : -1, &row)) != 0)
			return r;
		return stand(cur, row, key, val);
	case STORE_SEEK:
		return seek(cur, key, val, false, false, false);
	case STORE_SET:
		return seek(cur, key, val, false, true, false);
	case STORE_GET_BOTH:
		return seek(cur, key, val, true, true, true);
	case STORE_SEEK_DUP:
		return seek(cur, key, val, true, true, false);
	case STORE_NEXT_DUP:
		return next_dup(cur, key, val);
	case STORE_CURRENT:
		return current(cur, key, val);
	}
	return VAULT_ERR_STORE;
}

int
pg_cursor_replace(struct store_cursor *c, const void *data, size_t len)
{
	struct pg_cursor *cur = pg_cursor(c);
	struct args a = { .sp = cur->sp, .k = cur->k, .klen = cur->klen,
	    .v = data != NULL ? data : "", .vlen = len };
	long n = 0;
	int r;

	if (cur->dup || !cur->has_pos || cur->deleted) {
		log_error("replace at cursor (%s): %s", store_space_name(cur->sp),
		    cur->dup ? "a dup space" : "no entry at the cursor");
		return VAULT_ERR_STORE;
	}
	if ((r = pg_run_write(cur->t, KV_UPDATE, &a, "replace at cursor",
	    &n)) != 0)
		return r;
	return n == 1 ? 0 : VAULT_ERR_NOT_FOUND;
}

int
pg_cursor_del(struct store_cursor *c)
{
	struct pg_cursor *cur = pg_cursor(c);
	struct args a = { .sp = cur->sp, .k = cur->k, .klen = cur->klen };
	long n = 0;
	int r;

	if (!cur->has_pos || cur->deleted) {
		log_error("delete at cursor (%s): no entry at the cursor",
		    store_space_name(cur->sp));
		return VAULT_ERR_STORE;
	}
	if (cur->dup) {
		a.v = cur->v;
		a.vlen = cur->vlen;
	}
	if ((r = pg_run_write(cur->t, cur->dup ? DUP_DEL1 : KV_DEL, &a,
	    "delete at cursor", &n)) != 0)
		return r;
	/* The position stays: CURRENT and NEXT read the entry after it. */
	cur->deleted = true;
	return n == 1 ? 0 : VAULT_ERR_NOT_FOUND;
}
