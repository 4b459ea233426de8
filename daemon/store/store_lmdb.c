#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util/log.h"
#include "store/meta.h"
#include "store/store_lmdb.h"

#define STORE_MAX_DBS 24
#define STORE_MAX_READERS 512
/* Free disk outside the reserve below which ordinary writes stop. */
#define DISK_SLACK (1ULL << 20)
/* A journal buffer larger than this goes back to the allocator. */
#define POOL_KEEP (1u << 20)

static const char data_file[] = "data.mdb";

/*
 * LMDB's first meta page, for a data file too short to hold both: the page
 * header, then MDB_meta (liblmdb 0.9, data version 1, 64-bit, in the
 * host's byte order, little-endian on the targets vaultd supports): magic,
 * version, address, map size, two MDB_db of 48 bytes (the first one's
 * leading u32 is the page size), the last page number, the txn id.
 */
#define META_OFF_MAGIC 16
#define META_OFF_PSIZE 40
#define META_OFF_LAST_PG 136
#define META_END 152
#define META_MAGIC 0xBEEFC0DEu

/* Free bytes of the data file's filesystem for an unprivileged writer. */
static unsigned long long
disk_free(struct lmdb_store *st)
{
	struct statvfs sv;
	int fd;

	if (st == NULL || mdb_env_get_fd(st->env, &fd) != 0 ||
	    fstatvfs(fd, &sv) != 0)
		return ~0ULL;
	return (unsigned long long)sv.f_bavail * sv.f_frsize;
}

int
store_err(struct store *st, int rc, const char *what)
{
	struct lmdb_store *ls = st != NULL ? store_lmdb(st) : NULL;

	switch (rc) {
	case ENOSPC:
	case EDQUOT:
		log_error("%s: disk full", what);
		return VAULT_ERR_NOSPACE;
	case EIO:
		/* LMDB reports a short write (what a full disk gives) as EIO. */
		if (disk_free(ls) < DISK_SLACK) {
			log_error("%s: disk full (a short write)", what);
			return VAULT_ERR_NOSPACE;
		}
		log_error("%s: %s", what, mdb_strerror(rc));
		return VAULT_ERR_STORE;
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return VAULT_ERR_NOT_FOUND;
	case MDB_MAP_FULL:
		log_error("%s: the data file reached its map size", what);
		/* The journal's snapshot may hold pages the next frees. */
		if (ls != NULL && ls->wal != NULL)
			wal_nudge(ls->wal);
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

/* The key spaces: one named database each (store_space_name), dup spaces
 * MDB_DUPSORT. */

static int
open_dbs(struct lmdb_store *st)
{
	uint8_t fmt[4];
	MDB_txn *txn = NULL;
	MDB_val k = { strlen(meta_name(META_STORE_FORMAT)),
	    (void *)meta_name(META_STORE_FORMAT) }, v;
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0)
		return store_err(&st->base, rc, "begin");
	for (int i = 0; i < STORE_SPACES; i++)
		if ((rc = mdb_dbi_open(txn, store_space_name(i),
		    (store_space_dup(i) ? MDB_DUPSORT : 0) | MDB_CREATE,
		    &st->dbi[i])) != 0)
			goto fail;
	rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		store_put_u32(fmt, STORE_FORMAT_VERSION);
		st->format = STORE_FORMAT_VERSION;
		v.mv_size = sizeof(fmt);
		v.mv_data = fmt;
		if ((rc = mdb_put(txn, st->meta, &k, &v, 0)) != 0)
			goto fail;
	} else if (rc != 0) {
		goto fail;
	} else if (v.mv_size != 4) {
		log_error("the store's format version record is corrupt (%zu "
		    "bytes, not 4); refusing it", v.mv_size);
		mdb_txn_abort(txn);
		return VAULT_ERR_STATE;
	} else {
		st->format = store_get_u32(v.mv_data);
		if (st->format != STORE_FORMAT_VERSION && !st->any_format) {
			store_format_refusal(st->format);
			mdb_txn_abort(txn);
			return VAULT_ERR_STATE;
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return store_err(&st->base, rc, "create databases");
	return 0;
fail:
	mdb_txn_abort(txn);
	if (rc == MDB_INCOMPATIBLE) {
		log_error("the store's databases do not have the expected layout");
		return VAULT_ERR_STATE;
	}
	return store_err(&st->base, rc, "open databases");
}

int
store_exists(const char *dir, bool *exists)
{
	char path[4096];
	struct stat sb;

	*exists = false;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, data_file) >=
	    sizeof(path)) {
		log_error("the store directory's path is too long");
		return VAULT_ERR_INVALID;
	}
	if (stat(path, &sb) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		log_error("cannot examine %s: %s", path, strerror(errno));
		return VAULT_ERR_IO;
	}
	*exists = sb.st_size > 0;
	return 0;
}

static uint64_t
get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

/*
 * The bytes the store needs from its first meta page alone (0: page 0 is
 * not an LMDB meta page, so the file is not a truncated store). LMDB's own
 * open refuses a file too short for its second meta page before any
 * public call can read the first one.
 */
static uint64_t
meta0_need(int fd)
{
	uint8_t m[META_END];
	uint64_t psize, last;

	if (pread(fd, m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
	    get_le(m + META_OFF_MAGIC, 4) != META_MAGIC)
		return 0;
	psize = get_le(m + META_OFF_PSIZE, 4);
	last = get_le(m + META_OFF_LAST_PG, 8);
	if (psize < 512 || psize > 65536 || last > (UINT64_MAX >> 17))
		return 0;
	return (last + 1 > 2 ? last + 1 : 2) * psize;
}

/*
 * A data file shorter than the store's last page (cut by a copy, a full
 * disk, a bad restore) maps pages past its end: the first read of one
 * kills the process with SIGBUS, long after "ready". Compared here, before
 * the store is opened for writing: the meta pages are read through a
 * read-only environment without a lock file, so nothing is written.
 */
static int
check_length(const char *dir)
{
	char path[4096];
	MDB_env *probe = NULL;
	MDB_envinfo info;
	MDB_stat ms;
	struct stat sb;
	uint64_t need = 0;
	int fd = -1, rc, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, data_file);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd,
	    &sb) != 0 ||
	    sb.st_size == 0)
		goto out;		/* none yet: mdb_env_open says why if needed */
	if ((rc = mdb_env_create(&probe)) != 0)
		goto out;
	rc = mdb_env_open(probe, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS,
	    0600);
	if (rc == 0 && mdb_env_info(probe, &info) == 0 &&
	    mdb_env_stat(probe, &ms) == 0)
		need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	else if (rc == MDB_INVALID)
		need = meta0_need(fd);
	if (need > (uint64_t)sb.st_size) {
		log_error("%s is shorter than the store it holds (%llu of %llu "
		    "bytes): it was truncated; restore it from a backup", data_file,
		    (unsigned long long)sb.st_size, (unsigned long long)need);
		r = VAULT_ERR_STATE;
	}
out:
	if (probe != NULL)
		mdb_env_close(probe);
	if (fd >= 0)
		close(fd);
	return r;
}

int
store_probe_format(const char *dir, uint32_t *format)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k = { strlen(meta_name(META_STORE_FORMAT)),
	    (void *)meta_name(META_STORE_FORMAT) }, v;
	int rc;

	*format = 0;
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(env, STORE_MAX_DBS)) != 0 ||
	    (rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS,
	    0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", 0, &dbi)) != 0 ||
	    (rc = mdb_get(txn, dbi, &k, &v)) != 0)
		goto out;
	if (v.mv_size != 4)
		rc = MDB_INVALID;
	else
		*format = store_get_u32(v.mv_data);
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (env != NULL)
		mdb_env_close(env);
	if (rc != 0) {
		log_error("cannot read the store's format version: %s",
		    mdb_strerror(rc));
		return VAULT_ERR_STATE;
	}
	return 0;
}

/*
 * Found and expected, and what to do: an older store is migrated by
 * vaultd --migrate (store_migrate.c); a newer one needs a newer vaultd.
 */
void
store_format_refusal(uint32_t found)
{
	log_error("store format %u; this vaultd reads %u..%u; %s", found,
	    (unsigned)STORE_FORMAT_VERSION, (unsigned)STORE_FORMAT_VERSION,
	    found < STORE_FORMAT_VERSION ? "run vaultd --migrate (back the "
	    "store up first)" : "it was written by a newer vaultd: run that "
	    "version, or restore a backup made by this one");
}

static const struct store_ops lmdb_ops;

struct lmdb_store *
store_lmdb(struct store *st)
{
	return st != NULL && st->ops == &lmdb_ops ? (struct lmdb_store *)st :
	    NULL;
}

int
store_open(struct store **out, const char *dir, size_t map_size)
{
	return store_open_lmdb(out, dir, map_size, false, true);
}

int
store_open_shared(struct store **out, const char *dir, size_t map_size)
{
	return store_open_lmdb(out, dir, map_size, false, false);
}

int
store_open_lmdb(struct store **out, const char *dir, size_t map_size,
    bool any_format, bool exclusive)
{
	struct lmdb_store *st;
	struct wal_pending pending = { 0 };
	bool foreign = false;
	int rc, r;

	*out = NULL;
	/*
	 * A crash's checkpoint first: until then the meta pages may lie. Only
	 * by the store's one writer: another process's journal is live.
	 */
	if (exclusive)
		r = wal_restore(dir, &pending);
	else
		r = wal_exists(dir, &foreign);
	if (r != 0 || (r = check_length(dir)) != 0)
		return r;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return VAULT_ERR_NOMEM;
	st->base.ops = &lmdb_ops;
	st->any_format = any_format;
	st->pending = pending;
	st->shared = !exclusive;
	st->foreign = foreign;
	pthread_mutex_init(&st->pool_mu, NULL);
	if ((st->dir = strdup(dir)) == NULL) {
		free(st);
		return VAULT_ERR_NOMEM;
	}
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, STORE_MAX_DBS)) != 0 ||
	    (rc = mdb_env_set_maxreaders(st->env, STORE_MAX_READERS)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, map_size)) != 0) {
		r = store_err(&st->base, rc, "configure environment");
		goto fail;
	}
	mdb_env_set_userctx(st->env, st);
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
	/* The checkpoint's snapshot, held until the replay settles (wal.h). */
	if (st->pending.pending && (rc = mdb_txn_begin(st->env, NULL,
	    MDB_RDONLY, &st->pending.pin)) != 0) {
		r = store_err(&st->base, rc, "hold the journal's checkpoint");
		goto fail;
	}
	if ((r = open_dbs(st)) != 0)
		goto fail;
	*out = &st->base;
	return 0;
fail:
	store_close(&st->base);
	return r;
}

static void
lmdb_close(struct store *st)
{
	struct lmdb_store *ls = store_lmdb(st);
	struct wal_buf *b, *next;

	wal_stop(ls->wal);
	ls->wal = NULL;
	if (ls->pending.pin != NULL)
		mdb_txn_abort(ls->pending.pin);
	if (ls->env != NULL)
		mdb_env_close(ls->env);
	for (b = ls->pool; b != NULL; b = next) {
		next = b->next;
		free(b->p);
		free(b);
	}
	pthread_mutex_destroy(&ls->pool_mu);
	free(ls->dir);
	free(ls);
}

/* ------------------------------------------------------------ the journal */

static struct wal_buf *
ops_get(struct lmdb_store *ls)
{
	struct wal_buf *b;

	pthread_mutex_lock(&ls->pool_mu);
	if ((b = ls->pool) != NULL)
		ls->pool = b->next;
	pthread_mutex_unlock(&ls->pool_mu);
	return b != NULL ? b : calloc(1, sizeof(*b));
}

/* Back to the pool, emptied; a large one to the allocator. */
static void
ops_put(struct lmdb_store *ls, struct wal_buf *b)
{
	if (b == NULL)
		return;
	if (b->cap > POOL_KEEP) {
		free(b->p);
		free(b);
		return;
	}
	b->len = 0;
	pthread_mutex_lock(&ls->pool_mu);
	b->next = ls->pool;
	ls->pool = b;
	pthread_mutex_unlock(&ls->pool_mu);
}

/* Records an effect of txn for the journal; no-op when not journaling. */
static int
note(struct store_txn *txn, enum wal_op op, enum store_space sp,
    const void *key, size_t klen, const void *val, size_t vlen)
{
	struct lmdb_txn *t = (struct lmdb_txn *)txn;

	if (t->ops == NULL || wal_buf_op(t->ops, op, sp, key, klen, val,
	    vlen) == 0)
		return 0;
	/* LMDB has the write; the journal does not: it must not commit. */
	t->poisoned = true;
	log_error("the store journal cannot record a write: out of memory");
	return VAULT_ERR_NOMEM;
}

static bool
lmdb_journal_pending(const struct store *st)
{
	return ((const struct lmdb_store *)st)->pending.pending;
}

static bool
lmdb_journal_foreign(const struct store *st)
{
	return ((const struct lmdb_store *)st)->foreign;
}

/* The store as its journal sees it (wal.h). */
static struct wal_store
journal_view(struct lmdb_store *ls)
{
	return (struct wal_store){ &ls->base, ls->env, ls->dbi, store_err };
}

static int
lmdb_journal_replay(struct store *st, const uint8_t *key)
{
	struct lmdb_store *ls = store_lmdb(st);
	struct wal_store ws = journal_view(ls);
	uint64_t n;
	int r;

	if (!ls->pending.pending)
		return 0;
	if ((r = wal_replay(&ws, ls->dir, &ls->pending, key, &n)) == 0) {
		ls->pending.pending = false;
		mdb_txn_abort(ls->pending.pin);
		ls->pending.pin = NULL;
	}
	return r;
}

static int
lmdb_journal_start(struct store *st, const uint8_t *key)
{
	struct lmdb_store *ls = store_lmdb(st);
	struct wal_store ws = journal_view(ls);

	if (ls->wal != NULL)
		return 0;
	if (ls->shared) {
		log_error("the store journal is kept only by the store's one "
		    "writer");
		return VAULT_ERR_STATE;
	}
	if (ls->pending.pending) {
		log_error("the store journal has writes to replay first");
		return VAULT_ERR_STATE;
	}
	return wal_start(&ls->wal, &ws, ls->dir, key);
}

static int
lmdb_checkpoint(struct store *st)
{
	struct lmdb_store *ls = store_lmdb(st);

	return ls->wal != NULL ? wal_checkpoint(ls->wal) : 0;
}

static struct lmdb_store *
txn_store(struct store_txn *txn)
{
	return (struct lmdb_store *)txn->st;
}

/* store_err naming the operation and its key space, for the log. */
static int
space_err(struct store_txn *txn, int rc, const char *op, enum store_space sp)
{
	char what[64];

	snprintf(what, sizeof(what), "%s (%s)", op, store_space_name(sp));
	return store_err(txn->st, rc, what);
}

/* ------------------------------------------------------------ transactions */

static int
txn_begin(struct store *st, struct lmdb_txn *parent, unsigned flags,
    struct store_txn **out, const char *what)
{
	struct lmdb_txn *t;
	int rc;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((rc = mdb_txn_begin(store_lmdb(st)->env, parent ? parent->t : NULL,
	    flags, &t->t)) != 0) {
		free(t);
		return store_err(st, rc, what);
	}
	t->base.st = st;
	t->rdonly = (flags & MDB_RDONLY) != 0;
	t->nested = parent != NULL;
	t->parent = parent;
	if (!t->rdonly && (store_lmdb(st)->wal != NULL ||
	    store_lmdb(st)->foreign) &&
	    (t->ops = ops_get(store_lmdb(st))) == NULL) {
		mdb_txn_abort(t->t);
		free(t);
		return VAULT_ERR_NOMEM;
	}
	*out = &t->base;
	return 0;
}

/*
 * Frees the cursors' handles of a txn that ends: LMDB has closed a write
 * txn's cursors with it; a reader's are closed here.
 */
static void
txn_free(struct lmdb_txn *t, bool close_cursors)
{
	struct lmdb_cursor *c, *next;

	for (c = t->cursors; c != NULL; c = next) {
		next = c->next;
		if (close_cursors)
			mdb_cursor_close(c->c);
		free(c);
	}
	free(t);
}

static int
lmdb_read_begin(struct store *st, struct store_txn **txn)
{
	return txn_begin(st, NULL, MDB_RDONLY, txn, "begin read");
}

static void
lmdb_read_end(struct store_txn *txn)
{
	struct lmdb_txn *t = (struct lmdb_txn *)txn;
	struct lmdb_cursor *c;

	for (c = t->cursors; c != NULL; c = c->next)
		mdb_cursor_close(c->c);
	mdb_txn_abort(t->t);
	txn_free(t, false);
}

static int
lmdb_write_begin(struct store *st, struct store_txn **txn)
{
	if (store_lmdb(st)->pending.pending) {
		*txn = NULL;
		log_error("the store has journaled writes a crash left to replay; "
		    "start vaultd on it once to replay them");
		return VAULT_ERR_STATE;
	}
	if (store_lmdb(st)->wal != NULL)
		wal_wait_room(store_lmdb(st)->wal);
	return txn_begin(st, NULL, 0, txn, "begin write");
}

static int
lmdb_nested_begin(struct store_txn *parent, struct store_txn **child)
{
	return txn_begin(parent->st, (struct lmdb_txn *)parent, 0, child,
	    "begin nested write");
}

/*
 * A commit that need not be durable sets MDB_NOSYNC around it: only the
 * writer thread commits, so no other commit sees the flag. The flusher
 * (writer.c) or the next durable commit syncs it.
 */
static void lmdb_abort(struct store_txn *txn);

/*
 * A store another process journals (or left to recover) is only read: a
 * commit that changed nothing goes through (a writer group with nothing
 * to do); one that changed something is refused, having written nothing.
 */
static int
foreign_commit(struct lmdb_store *ls, MDB_txn *t, const struct wal_buf *ops)
{
	int rc;

	if (ops->len > 0) {
		mdb_txn_abort(t);
		log_error("the store's journal (wal.ckpt) belongs to a running "
		    "vaultd, or awaits its recovery: this process only reads the "
		    "store. If no vaultd runs on it, start one once to recover");
		return VAULT_ERR_STATE;
	}
	if ((rc = mdb_txn_commit(t)) != 0)
		return store_err(&ls->base, rc, "commit");
	return 0;
}

static int
lmdb_commit(struct store_txn *txn, bool durable)
{
	struct lmdb_txn *t = (struct lmdb_txn *)txn;
	struct store *st = txn->st;
	struct lmdb_store *ls = store_lmdb(st);
	MDB_env *env = ls->env;
	bool nosync = !t->nested && !durable;
	int rc, r;

	if (t->ops != NULL) {
		struct lmdb_txn *parent = NULL;
		size_t mark = 0;

		if (t->poisoned) {
			lmdb_abort(txn);
			return VAULT_ERR_NOMEM;
		}
		if (!t->nested && ls->foreign) {
			r = foreign_commit(ls, t->t, t->ops);
			ops_put(ls, t->ops);
			txn_free(t, false);
			return r;
		}
		if (!t->nested) {
			r = wal_commit(ls->wal, t->t, t->ops, durable);
			ops_put(ls, t->ops);
			txn_free(t, false);
			return r;
		}
		/* A nested txn's effects join its parent's, in order. */
		parent = t->parent;
		mark = parent->ops->len;
		if (wal_buf_join(parent->ops, t->ops) != 0) {
			mdb_txn_abort(t->t);
			ops_put(ls, t->ops);
			txn_free(t, false);
			log_error("the store journal cannot record a write: out of "
			    "memory");
			return VAULT_ERR_NOMEM;
		}
		ops_put(ls, t->ops);
		if ((rc = mdb_txn_commit(t->t)) != 0)
			parent->ops->len = mark;
		txn_free(t, false);
		return rc != 0 ? store_err(st, rc, "commit") : 0;
	}
	if (nosync)
		mdb_env_set_flags(env, MDB_NOSYNC, 1);
	rc = mdb_txn_commit(t->t);
	if (nosync)
		mdb_env_set_flags(env, MDB_NOSYNC, 0);
	txn_free(t, false);
	return rc != 0 ? store_err(st, rc, "commit") : 0;
}

static void
lmdb_abort(struct store_txn *txn)
{
	struct lmdb_txn *t = (struct lmdb_txn *)txn;

	if (t->rdonly) {
		lmdb_read_end(txn);
		return;
	}
	mdb_txn_abort(t->t);
	ops_put(store_lmdb(txn->st), t->ops);
	txn_free(t, false);
}

/* ------------------------------------------------------ get, put, delete */

static int
lmdb_get(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, struct store_val *val)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	if ((rc = mdb_get(store_mdb_txn(txn), txn_store(txn)->dbi[sp], &k,
	    &v)) != 0) {
		val->data = NULL;
		val->len = 0;
		return rc == MDB_NOTFOUND ? VAULT_ERR_NOT_FOUND :
		    space_err(txn, rc, "get", sp);
	}
	val->data = v.mv_data;
	val->len = v.mv_size;
	return 0;
}

/*
 * *found: whether the pair key -> data is in dup space sp. A put of a pair
 * already there would still copy its page (LMDB touches the page before it
 * finds the pair) and journal the put: the look-up spares both.
 */
static int
has_pair(struct store_txn *txn, enum store_space sp, const MDB_val *k,
    const MDB_val *v, bool *found)
{
	MDB_cursor *cur;
	MDB_val kk = *k, vv = *v;
	int rc;

	*found = false;
	if ((rc = mdb_cursor_open(store_mdb_txn(txn), txn_store(txn)->dbi[sp],
	    &cur)) != 0)
		return space_err(txn, rc, "open a cursor on", sp);
	rc = mdb_cursor_get(cur, &kk, &vv, MDB_GET_BOTH);
	mdb_cursor_close(cur);
	*found = rc == 0;
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : space_err(txn, rc, "get", sp);
}

static int
lmdb_put(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *data, size_t len, unsigned flags)
{
	MDB_val k = { klen, (void *)key }, v = { len, (void *)data };
	unsigned f = 0;
	bool found;
	int rc;

	if (store_space_dup(sp)) {
		if (flags & STORE_APPEND) {
			log_error("put (%s): STORE_APPEND in a dup space",
			    store_space_name(sp));
			return VAULT_ERR_STORE;		/* as on PostgreSQL */
		}
		if (!(flags & STORE_NOOVERWRITE)) {
			if ((rc = has_pair(txn, sp, &k, &v, &found)) != 0)
				return rc;
			if (found)
				return flags & STORE_NODUPDATA ?
				    VAULT_ERR_EXISTS : 0;
		}
	}
	if (flags & STORE_NOOVERWRITE)
		f |= MDB_NOOVERWRITE;
	if (flags & STORE_NODUPDATA)
		f |= MDB_NODUPDATA;
	if (flags & STORE_APPEND)
		f |= MDB_APPEND;
	if ((rc = mdb_put(store_mdb_txn(txn), txn_store(txn)->dbi[sp], &k, &v,
	    f)) == 0)
		return note(txn, WAL_PUT, sp, key, klen, data, len);
	/* Out of order under MDB_APPEND is a store error, as before. */
	return rc == MDB_KEYEXIST && !(flags & STORE_APPEND) ? VAULT_ERR_EXISTS :
	    space_err(txn, rc, "put", sp);
}

static int
lmdb_del(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *dup, size_t duplen)
{
	MDB_val k = { klen, (void *)key }, v = { duplen, (void *)dup };
	int rc;

	if ((rc = mdb_del(store_mdb_txn(txn), txn_store(txn)->dbi[sp], &k,
	    dup != NULL ? &v : NULL)) == 0)
		return note(txn, WAL_DEL, sp, key, klen, dup, dup != NULL ?
		    duplen : 0);
	return rc == MDB_NOTFOUND ? VAULT_ERR_NOT_FOUND :
	    space_err(txn, rc, "delete", sp);
}

static int
lmdb_count(struct store_txn *txn, enum store_space sp, size_t *n)
{
	MDB_stat ms;
	int rc;

	*n = 0;
	if ((rc = mdb_stat(store_mdb_txn(txn), txn_store(txn)->dbi[sp],
	    &ms)) != 0)
		return space_err(txn, rc, "count", sp);
	*n = ms.ms_entries;
	return 0;
}

static int
lmdb_delete_prefix(struct store_txn *txn, enum store_space sp,
    const void *prefix, size_t len)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { len, (void *)prefix }, v;
	int rc;

	if ((rc = mdb_cursor_open(store_mdb_txn(txn), txn_store(txn)->dbi[sp],
	    &cur)) != 0)
		return space_err(txn, rc, "open cursor", sp);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < len || memcmp(k.mv_data, prefix, len) != 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return space_err(txn, rc, "delete by prefix", sp);
	return note(txn, WAL_DELPFX, sp, prefix, len, NULL, 0);
}

/* ------------------------------------------------------------ cursors */

static struct lmdb_cursor *
lcur(struct store_cursor *cur)
{
	return (struct lmdb_cursor *)cur;
}

static enum store_space
cur_space(struct lmdb_cursor *c)
{
	MDB_dbi dbi = mdb_cursor_dbi(c->c);
	struct lmdb_store *st = txn_store(c->base.txn);

	for (int i = 0; i < STORE_SPACES; i++)
		if (st->dbi[i] == dbi)
			return i;
	return STORE_META;
}

static int
cur_err(struct lmdb_cursor *c, int rc, const char *op)
{
	return space_err(c->base.txn, rc, op, cur_space(c));
}

static int
lmdb_cursor_open(struct store_txn *txn, enum store_space sp,
    struct store_cursor **cur)
{
	struct lmdb_txn *t = (struct lmdb_txn *)txn;
	struct lmdb_cursor *c;
	int rc;

	*cur = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((rc = mdb_cursor_open(t->t, txn_store(txn)->dbi[sp], &c->c)) != 0) {
		free(c);
		return space_err(txn, rc, "open cursor", sp);
	}
	c->base.txn = txn;
	c->next = t->cursors;
	c->prev = &t->cursors;
	if (t->cursors != NULL)
		t->cursors->prev = &c->next;
	t->cursors = c;
	*cur = &c->base;
	return 0;
}

static void
lmdb_cursor_close(struct store_cursor *cur)
{
	struct lmdb_cursor *c = lcur(cur);

	*c->prev = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	mdb_cursor_close(c->c);
	free(c);
}

static int
lmdb_cursor_get(struct store_cursor *cur, struct store_val *key,
    struct store_val *val, enum store_move op)
{
	static const MDB_cursor_op ops[] = {
		[STORE_FIRST] = MDB_FIRST,
		[STORE_LAST] = MDB_LAST,
		[STORE_NEXT] = MDB_NEXT,
		[STORE_PREV] = MDB_PREV,
		[STORE_SEEK] = MDB_SET_RANGE,
		[STORE_SET] = MDB_SET_KEY,
		[STORE_NEXT_DUP] = MDB_NEXT_DUP,
		[STORE_GET_BOTH] = MDB_GET_BOTH,
		[STORE_SEEK_DUP] = MDB_GET_BOTH_RANGE,
		[STORE_CURRENT] = MDB_GET_CURRENT,
	};
	MDB_val k = { key->len, (void *)key->data };
	MDB_val v = { val->len, (void *)val->data };
	int rc;

	rc = mdb_cursor_get(lcur(cur)->c, &k, &v, ops[op]);
	/* After a delete at the end, LMDB has no current entry: EINVAL. */
	if (rc == EINVAL && op == STORE_CURRENT)
		rc = MDB_NOTFOUND;
	if (rc != 0)
		return rc == MDB_NOTFOUND ? VAULT_ERR_NOT_FOUND :
		    cur_err(lcur(cur), rc, "cursor");
	key->data = k.mv_data;
	key->len = k.mv_size;
	val->data = v.mv_data;
	val->len = v.mv_size;
	return 0;
}

static int
lmdb_cursor_replace(struct store_cursor *cur, const void *data, size_t len)
{
	MDB_cursor *mc = lcur(cur)->c;
	uint8_t key[STORE_KEY_MAX];
	MDB_val k, v = { len, (void *)data };
	int rc;

	/*
	 * MDB_CURRENT wants the current key. It is copied: a value of another
	 * size may move the node, and the page, it points into.
	 */
	if ((rc = mdb_cursor_get(mc, &k, &(MDB_val){ 0, NULL },
	    MDB_GET_CURRENT)) == 0) {
		if (k.mv_size > sizeof(key))
			return store_err(cur->txn->st, MDB_BAD_VALSIZE,
			    "replace at cursor");
		memcpy(key, k.mv_data, k.mv_size);
		k.mv_data = key;
		rc = mdb_cursor_put(mc, &k, &v, MDB_CURRENT);
	}
	if (rc == 0)
		return note(cur->txn, WAL_PUT, cur_space(lcur(cur)), k.mv_data,
		    k.mv_size, data, len);
	return cur_err(lcur(cur), rc, "replace at cursor");
}

static int
lmdb_cursor_del(struct store_cursor *cur)
{
	enum store_space sp;
	MDB_val k, v;
	int rc, r;

	/* The journal names what goes: the key, and in a dup space the value. */
	if (((struct lmdb_txn *)cur->txn)->ops != NULL) {
		sp = cur_space(lcur(cur));
		if ((rc = mdb_cursor_get(lcur(cur)->c, &k, &v,
		    MDB_GET_CURRENT)) != 0)
			return cur_err(lcur(cur), rc, "delete at cursor");
		if ((r = note(cur->txn, WAL_DEL, sp, k.mv_data, k.mv_size,
		    v.mv_data, store_space_dup(sp) ? v.mv_size : 0)) != 0)
			return r;
	}
	if ((rc = mdb_cursor_del(lcur(cur)->c, 0)) != 0)
		return cur_err(lcur(cur), rc, "delete at cursor");
	return 0;
}

static int
lmdb_sync(struct store *st)
{
	int rc;

	if (store_lmdb(st)->wal != NULL)
		return wal_sync(store_lmdb(st)->wal);
	if ((rc = mdb_env_sync(store_lmdb(st)->env, 1)) != 0)
		return store_err(st, rc, "sync");
	return 0;
}

/* ------------------------------------------------------------ headroom */

/* Pages on LMDB's freelist: inside the file, free to reuse. */
static int
free_pages(struct lmdb_store *st, size_t *n)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t count;
	int rc;

	*n = 0;
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0)
		goto out;
	/* Database 0 is the freelist: txn id -> page list, count first. */
	if ((rc = mdb_cursor_open(txn, 0, &cur)) != 0)
		goto out;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (v.mv_size < sizeof(count))
			continue;
		memcpy(&count, v.mv_data, sizeof(count));
		*n += count;
	}
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : store_err(&st->base, rc,
	    "count free pages");
}

/* VAULT_ERR_LIMIT when the pages in use reach the high-water mark. */
static int
map_room(struct lmdb_store *st)
{
	MDB_envinfo info;
	MDB_stat ms;
	size_t used, mark, nfree;
	int r;

	if (mdb_env_info(st->env, &info) != 0 || mdb_env_stat(st->env,
	    &ms) != 0)
		return 0;
	mark = info.me_mapsize / 100 * (size_t)st->base.high_water_pct;
	used = (info.me_last_pgno + 1) * (size_t)ms.ms_psize;
	/* The file is below the mark: no need to count the free pages. */
	if (used < mark)
		return 0;
	if ((r = free_pages(st, &nfree)) != 0)
		return r;
	used -= nfree * ms.ms_psize < used ? nfree * ms.ms_psize : used;
	return used < mark ? 0 : VAULT_ERR_LIMIT;
}

/* VAULT_ERR_NOSPACE when the disk reserve cannot be kept allocated. */
static int
disk_room(struct lmdb_store *st)
{
	MDB_envinfo info;
	struct stat sb;
	off_t want, ahead;
	int fd;

	if (st->base.disk_reserve == 0 || mdb_env_get_fd(st->env, &fd) != 0 ||
	    fstat(fd, &sb) != 0 || mdb_env_info(st->env, &info) != 0)
		return 0;
	/* Past the map size LMDB never writes: no reserve beyond it. */
	want = (off_t)st->base.disk_reserve;
	if ((off_t)info.me_mapsize - sb.st_size < want)
		want = (off_t)info.me_mapsize - sb.st_size;
	ahead = (off_t)sb.st_blocks * 512 - sb.st_size;
	/* An ordinary write must not take the reserve: it needs free disk too. */
	if (want <= 0 || ahead >= want ||
	    fallocate(fd, FALLOC_FL_KEEP_SIZE, sb.st_size, want) == 0)
		return disk_free(st) < DISK_SLACK ? VAULT_ERR_NOSPACE : 0;
	if (errno == ENOSPC || errno == EDQUOT)
		return VAULT_ERR_NOSPACE;
	/* A filesystem without fallocate: keep the reserve free, unowned. */
	if (errno == EOPNOTSUPP)
		return disk_free(st) < (unsigned long long)want ?
		    VAULT_ERR_NOSPACE : 0;
	log_warn("cannot reserve disk space for the store: %s", strerror(errno));
	return 0;
}

static int
lmdb_room(struct store *st)
{
	int r;

	if ((r = map_room(store_lmdb(st))) == 0)
		r = disk_room(store_lmdb(st));
	return r;
}

static int
lmdb_usage(struct store *st, struct store_usage *out)
{
	struct lmdb_store *ls = store_lmdb(st);
	MDB_envinfo info;
	MDB_stat ms;
	struct stat sb;
	int fd;

	memset(out, 0, sizeof(*out));
	if (mdb_env_info(ls->env, &info) != 0 || mdb_env_stat(ls->env,
	    &ms) != 0)
		return VAULT_ERR_STORE;
	out->map_bytes = info.me_mapsize;
	out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	out->high_water_pct = st->high_water_pct;
	if (mdb_env_get_fd(ls->env, &fd) == 0 && fstat(fd, &sb) == 0)
		out->file_bytes = (uint64_t)sb.st_size;
	return 0;
}

static const struct store_ops lmdb_ops = {
	.name = "lmdb",
	.in_process = true,
	.close = lmdb_close,
	.read_begin = lmdb_read_begin,
	.read_end = lmdb_read_end,
	.write_begin = lmdb_write_begin,
	.nested_begin = lmdb_nested_begin,
	.commit = lmdb_commit,
	.abort = lmdb_abort,
	.get = lmdb_get,
	.put = lmdb_put,
	.del = lmdb_del,
	.delete_prefix = lmdb_delete_prefix,
	.count = lmdb_count,
	.cursor_open = lmdb_cursor_open,
	.cursor_close = lmdb_cursor_close,
	.cursor_get = lmdb_cursor_get,
	.cursor_replace = lmdb_cursor_replace,
	.cursor_del = lmdb_cursor_del,
	.sync = lmdb_sync,
	.room = lmdb_room,
	.usage = lmdb_usage,
	.journal_pending = lmdb_journal_pending,
	.journal_foreign = lmdb_journal_foreign,
	.journal_replay = lmdb_journal_replay,
	.journal_start = lmdb_journal_start,
	.checkpoint = lmdb_checkpoint,
};
