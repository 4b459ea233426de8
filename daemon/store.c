#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"

#define STORE_MAX_DBS 16
#define STORE_MAX_READERS 512

static const char format_key[] = "store_format";

uint64_t
store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
store_put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void
store_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint32_t
store_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

uint64_t
store_get_u64(const uint8_t *p)
{
	return (uint64_t)store_get_u32(p) << 32 | store_get_u32(p + 4);
}

int
store_err(struct store *st, int rc, const char *what)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return VAULT_ERR_NOT_FOUND;
	case MDB_MAP_FULL:
		log_error("%s: the data file reached its map size", what);
		return VAULT_ERR_LIMIT;
	case MDB_READERS_FULL:
		log_warn("%s: too many concurrent readers", what);
		return VAULT_ERR_LIMIT;
	case MDB_PANIC:
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		log_error("%s: fatal store error: %s; refusing further calls",
		    what, mdb_strerror(rc));
		if (st != NULL)
			st->failed = 1;
		return VAULT_ERR_UNAVAILABLE;
	default:
		log_error("%s: %s", what, mdb_strerror(rc));
		return VAULT_ERR_STORE;
	}
}

static int
open_dbs(struct store *st)
{
	static const struct { const char *name; unsigned flags; size_t off; } dbs[] = {
		{ "consumers", 0, offsetof(struct store, consumers) },
		{ "attrs", 0, offsetof(struct store, attrs) },
		{ "consents", 0, offsetof(struct store, consents) },
		{ "counts", 0, offsetof(struct store, counts) },
		{ "lineage", MDB_DUPSORT, offsetof(struct store, lineage) },
		{ "datasets", 0, offsetof(struct store, datasets) },
		{ "ledger", 0, offsetof(struct store, ledger) },
		{ "audit", 0, offsetof(struct store, audit) },
		{ "audit_ref", MDB_DUPSORT, offsetof(struct store, audit_ref) },
		{ "meta", 0, offsetof(struct store, meta) },
		{ "requests", 0, offsetof(struct store, requests) },
		{ "gc", 0, offsetof(struct store, gc) },
		{ "manifests", 0, offsetof(struct store, manifests) },
	};
	uint8_t fmt[4];
	MDB_txn *txn = NULL;
	MDB_val k = { sizeof(format_key) - 1, (void *)format_key }, v;
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0)
		return store_err(st, rc, "begin");
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)st + dbs[i].off);

		if ((rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | MDB_CREATE,
		    dbi)) != 0)
			goto fail;
	}
	rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		store_put_u32(fmt, STORE_FORMAT_VERSION);
		v.mv_size = sizeof(fmt);
		v.mv_data = fmt;
		if ((rc = mdb_put(txn, st->meta, &k, &v, 0)) != 0)
			goto fail;
	} else if (rc != 0) {
		goto fail;
	} else if (v.mv_size != 4 ||
	    store_get_u32(v.mv_data) != STORE_FORMAT_VERSION) {
		log_error("the store has an unknown format version; refusing it");
		mdb_txn_abort(txn);
		return VAULT_ERR_STATE;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return store_err(st, rc, "create databases");
	return 0;
fail:
	mdb_txn_abort(txn);
	if (rc == MDB_INCOMPATIBLE) {
		log_error("the store's databases do not have the expected layout");
		return VAULT_ERR_STATE;
	}
	return store_err(st, rc, "open databases");
}

int
store_open(struct store **out, const char *dir, size_t map_size)
{
	struct store *st;
	int rc, r;

	*out = NULL;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, STORE_MAX_DBS)) != 0 ||
	    (rc = mdb_env_set_maxreaders(st->env, STORE_MAX_READERS)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, map_size)) != 0) {
		r = store_err(st, rc, "configure environment");
		goto fail;
	}
	rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0600);
	if (rc != 0) {
		if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
		    rc == MDB_CORRUPTED) {
			log_error("the data file in the store directory is not a "
			    "valid LMDB store (%s)", mdb_strerror(rc));
			r = VAULT_ERR_STATE;
		} else {
			log_error("cannot open the store: %s", mdb_strerror(rc));
			r = VAULT_ERR_IO;
		}
		goto fail;
	}
	if ((r = open_dbs(st)) != 0)
		goto fail;
	*out = st;
	return 0;
fail:
	store_close(st);
	return r;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->env != NULL)
		mdb_env_close(st->env);
	free(st);
}

int
store_read_begin(struct store *st, MDB_txn **txn)
{
	int rc;

	*txn = NULL;
	if (st->failed)
		return VAULT_ERR_UNAVAILABLE;
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn)) != 0)
		return store_err(st, rc, "begin read");
	return 0;
}

int
store_delete_prefix(struct store *st, MDB_txn *txn, MDB_dbi dbi,
    const void *prefix, size_t len)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { len, (void *)prefix }, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return store_err(st, rc, "open cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < len || memcmp(k.mv_data, prefix, len) != 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store_err(st, rc, "delete by prefix");
	return 0;
}
