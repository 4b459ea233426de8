/*
 * store.h's calls, dispatched: each goes to the operations of the store's
 * backend (backend.h). The failed flag, the headroom and its logging and
 * the space names are the same for every backend. (store.c holds the
 * encodings, which need no backend.)
 */
#include "store/backend.h"
#include "util/log.h"

static const struct {
	const char *name;
	bool dup;
} spaces[STORE_SPACES] = {
	[STORE_CONSUMERS] = { "consumers", false },
	[STORE_ATTRS] = { "attrs", false },
	[STORE_CONSENTS] = { "consents", false },
	[STORE_COUNTS] = { "counts", false },
	[STORE_LINEAGE] = { "lineage", true },
	[STORE_DATASETS] = { "datasets", false },
	[STORE_LEDGER] = { "ledger", false },
	[STORE_AUDIT] = { "audit", false },
	[STORE_AUDIT_REF] = { "audit_ref", true },
	[STORE_META] = { "meta", false },
	[STORE_REQUESTS] = { "requests", false },
	[STORE_GC] = { "gc", false },
	[STORE_MANIFESTS] = { "manifests", false },
	[STORE_DELETIONS] = { "deletions", false },
	[STORE_LINEAGE_ROWS] = { "lineage_rows", false },
	[STORE_CONSENT_LEDGER] = { "consent_ledger", false },
	[STORE_DROP] = { "drop", false },
};

const char *
store_space_name(enum store_space sp)
{
	return sp < STORE_SPACES ? spaces[sp].name : "?";
}

bool
store_space_dup(enum store_space sp)
{
	return sp < STORE_SPACES && spaces[sp].dup;
}

/* ------------------------------------------------------------ the store */

const char *
store_backend_name(const struct store *st)
{
	return st->ops->name;
}

bool
store_in_process(const struct store *st)
{
	return st->ops->in_process;
}

void
store_close(struct store *st)
{
	if (st != NULL)
		st->ops->close(st);
}

int
store_sync(struct store *st)
{
	return st->ops->sync(st);
}

int
store_usage(struct store *st, struct store_usage *out)
{
	return st->ops->usage(st, out);
}

bool
store_journal_pending(const struct store *st)
{
	return st->ops->journal_pending != NULL && st->ops->journal_pending(st);
}

bool
store_journal_foreign(const struct store *st)
{
	return st->ops->journal_foreign != NULL && st->ops->journal_foreign(st);
}

int
store_journal_replay(struct store *st, const uint8_t *key)
{
	return st->ops->journal_replay != NULL ?
	    st->ops->journal_replay(st, key) : 0;
}

int
store_journal_start(struct store *st, const uint8_t *key)
{
	return st->ops->journal_start != NULL ?
	    st->ops->journal_start(st, key) : 0;
}

int
store_checkpoint(struct store *st)
{
	return st->ops->checkpoint != NULL ? st->ops->checkpoint(st) : 0;
}

bool
store_failed(const struct store *st)
{
	return st->failed != 0;
}

void
store_set_headroom(struct store *st, int high_water_pct, size_t disk_reserve)
{
	st->high_water_pct = high_water_pct;
	st->disk_reserve = disk_reserve;
	/*
	 * The reserve is taken at the first check of room (the health re-check
	 * runs every second), not here: a start refused later changes no file.
	 */
}

int
store_room(struct store *st)
{
	int r, old;

	if (st->failed)
		return VAULT_ERR_UNAVAILABLE;
	r = st->ops->room(st);
	old = __atomic_exchange_n(&st->refusing, r, __ATOMIC_RELAXED);
	if (old == r)
		return r;
	if (r == VAULT_ERR_LIMIT)
		log_error("the store passed its high-water mark (%d%% of the map "
		    "size): refusing ordinary writes; deletions, opt-outs and "
		    "the audit log go on in the headroom", st->high_water_pct);
	else if (r == VAULT_ERR_NOSPACE)
		log_error("disk full: the store's disk reserve cannot be kept; "
		    "refusing ordinary writes; deletions, opt-outs and the "
		    "audit log go on in the reserve");
	else if (r == 0)
		log_info("there is room again: ordinary writes are accepted");
	return r;
}

int
store_refusing(const struct store *st)
{
	return __atomic_load_n(&st->refusing, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ transactions */

int
store_read_begin(struct store *st, struct store_txn **txn)
{
	*txn = NULL;
	if (st->failed)
		return VAULT_ERR_UNAVAILABLE;
	return st->ops->read_begin(st, txn);
}

int
store_read_begin_bulk(struct store *st, struct store_txn **txn)
{
	*txn = NULL;
	if (st->failed)
		return VAULT_ERR_UNAVAILABLE;
	if (st->ops->read_begin_bulk == NULL)
		return st->ops->read_begin(st, txn);
	return st->ops->read_begin_bulk(st, txn);
}

void
store_read_end(struct store_txn *txn)
{
	if (txn != NULL)
		txn->st->ops->read_end(txn);
}

int
store_write_begin(struct store *st, struct store_txn **txn)
{
	*txn = NULL;
	if (st->failed)
		return VAULT_ERR_UNAVAILABLE;
	return st->ops->write_begin(st, txn);
}

int
store_write_commit(struct store_txn *txn)
{
	return txn->st->ops->commit(txn, true);
}

void
store_write_abort(struct store_txn *txn)
{
	store_abort(txn);
}

int
store_nested_begin(struct store_txn *parent, struct store_txn **child)
{
	*child = NULL;
	return parent->st->ops->nested_begin(parent, child);
}

int
store_commit(struct store_txn *txn, bool durable)
{
	return txn->st->ops->commit(txn, durable);
}

void
store_abort(struct store_txn *txn)
{
	if (txn != NULL)
		txn->st->ops->abort(txn);
}

struct store *
store_txn_store(struct store_txn *txn)
{
	return txn->st;
}

/* ------------------------------------------------------ get, put, delete */

int
store_get(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, struct store_val *val)
{
	return txn->st->ops->get(txn, sp, key, klen, val);
}

int
store_put(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *data, size_t len, unsigned flags)
{
	return txn->st->ops->put(txn, sp, key, klen, data, len, flags);
}

int
store_del(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *dup, size_t duplen)
{
	return txn->st->ops->del(txn, sp, key, klen, dup, duplen);
}

int
store_delete_prefix(struct store_txn *txn, enum store_space sp,
    const void *prefix, size_t len)
{
	return txn->st->ops->delete_prefix(txn, sp, prefix, len);
}

int
store_count(struct store_txn *txn, enum store_space sp, size_t *n)
{
	return txn->st->ops->count(txn, sp, n);
}

/* ------------------------------------------------------------ cursors */

int
store_cursor_open(struct store_txn *txn, enum store_space sp,
    struct store_cursor **cur)
{
	*cur = NULL;
	return txn->st->ops->cursor_open(txn, sp, cur);
}

void
store_cursor_close(struct store_cursor *cur)
{
	if (cur != NULL)
		cur->txn->st->ops->cursor_close(cur);
}

int
store_cursor_get(struct store_cursor *cur, struct store_val *key,
    struct store_val *val, enum store_move op)
{
	return cur->txn->st->ops->cursor_get(cur, key, val, op);
}

int
store_cursor_replace(struct store_cursor *cur, const void *data, size_t len)
{
	return cur->txn->st->ops->cursor_replace(cur, data, len);
}

int
store_cursor_del(struct store_cursor *cur)
{
	return cur->txn->st->ops->cursor_del(cur);
}

