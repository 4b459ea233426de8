/*
 * The PostgreSQL backend of store.h (libpq), for vaultd replicas sharing
 * one database: its design, transactions, gets, puts and deletes here;
 * connections, errors and statements in store_pg_conn.c; cursors in
 * store_pg_cursor.c (store_pg_int.h between them); docs/postgresql.md.
 * Everything vaultd writes here is already sealed by it: PostgreSQL sees
 * refs, wrapped keys and ciphertext only.
 *
 * SCHEMA. Two tables in the schema "vaultd", shared by the key spaces:
 *   kv  (sp int2, k bytea, v bytea, PRIMARY KEY (sp, k))     one value a key
 *   dup (sp int2, k bytea, v bytea, PRIMARY KEY (sp, k, v))  the dup spaces
 * sp is the enum store_space. Two shared tables rather than one a space:
 * a fixed, small set of prepared statements serves every space (the space
 * is a parameter, so no SQL is ever built, not even from a table name),
 * and a new space needs no DDL. bytea compares like memcmp, a shorter
 * value before its extensions: the contract's order, with no collation.
 * Values are stored uncompressed (STORAGE EXTERNAL): they are ciphertext.
 *
 * TRANSACTIONS. A read transaction takes a connection from a pool (grown
 * on demand up to pool_size; when every one is busy, a begin waits up to
 * POOL_WAIT_MS, then fails VAULT_ERR_LIMIT) and runs REPEATABLE READ READ
 * ONLY, its snapshot taken at begin: the contract's isolation. The writer
 * has its own connection; a top-level write transaction runs READ
 * COMMITTED after taking an advisory lock (WRITER_LOCK), so there is one
 * writer per database however many vaultd processes share it. READ
 * COMMITTED is then enough: every statement takes a fresh snapshot after
 * the lock was granted, so it sees every group committed before, and no
 * other writer can commit until this one ends. (REPEATABLE READ would take
 * its snapshot at the lock's own SELECT, before the wait, and miss the
 * commit that released the lock.) Nested transactions are savepoints.
 *
 * DURABILITY. Every commit is durable (synchronous_commit as the server
 * has it), lazy or not: with synchronous replication a commit made with
 * synchronous_commit = off is acknowledged before the standby has it, and
 * a failover would lose it. store_sync is therefore a no-op.
 *
 * LIFETIME. A store_val points into a PGresult. The transaction keeps the
 * results its gets and cursors returned (struct keep) until its next write,
 * which frees them after it ran (its arguments may point into them), or
 * its end. Deviation from the contract, to bound the memory of a long
 * read-only walk: a transaction keeps at most KEEP_MAX results, or
 * KEEP_BYTES of them (the newest KEEP_MIN always): a value stays valid for
 * at least the next KEEP_MIN - 1 gets or cursor batches of its
 * transaction, in practice for the next KEEP_MAX, not to its end. A cursor
 * fetches BATCH_MAX rows at a time (fewer right after a positioning move),
 * so a walk is not a query per row; a write in the transaction drops every
 * cursor's batch (a write generation), and the cursor reads again from its
 * position, which it keeps as a copy.
 *
 * ERRORS. A lost connection, an administrator's or crash shutdown, "cannot
 * connect now", and a read-only transaction (a standby, after a failover)
 * are VAULT_ERR_UNAVAILABLE without failing the store: the connection is
 * closed, and the next begin connects again, retrying for up to
 * connect_timeout_s (a proxy moves to the new leader meanwhile; once an
 * attempt gave up, the next ones try once until one succeeds); the
 * writer refuses a standby. Disk full is VAULT_ERR_NOSPACE, serialization
 * failures and deadlocks VAULT_ERR_UNAVAILABLE (retryable), corruption
 * (XX001, XX002) fails the store; the rest is VAULT_ERR_STORE. Logs carry
 * the SQLSTATE and the primary message, never a parameter.
 *
 * ROOM. PostgreSQL manages its own disk: store_room answers 0 unless the
 * store failed; a full disk shows as VAULT_ERR_NOSPACE on the write.
 * store_usage reports pg_database_size, map_bytes 0 (there is no map).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "util/timeutil.h"
#include "store/backend.h"
#include "store/meta.h"
#include "store/store_pg.h"
#include "store/store_pg_int.h"

/*
 * pg_advisory_xact_lock's key for the writer: "vaultdw1", big-endian. The
 * wait for it is bounded (lock_timeout, connect_timeout_s): a replica
 * whose writer hangs inside a group must not stop every other one for
 * good (PostgreSQL's idle_in_transaction_session_timeout ends it).
 */
#define WRITER_LOCK "8530228277886089009"
#define BEGIN_WRITE "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; " \
	"SET LOCAL lock_timeout = '%us'; " \
	"SELECT pg_advisory_xact_lock(" WRITER_LOCK ")"
/* The trailing SELECT takes the snapshot now, not at the first read. */
#define BEGIN_READ "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1"

/*
 * Long enough that a burst of readers (forty feature streams taking their
 * snapshots at once) queues rather than fails a short call behind it; the
 * call's own deadline still bounds what its client waits.
 */
#define POOL_WAIT_MS 10000

/* The key and dup-value bounds below are STORE_KEY_MAX, written out. */
_Static_assert(STORE_KEY_MAX == 511, "schema_sql's bounds");

static const char schema_sql[] =
	"CREATE SCHEMA IF NOT EXISTS vaultd;"
	"CREATE TABLE vaultd.kv (sp int2 NOT NULL, k bytea NOT NULL,"
	" v bytea NOT NULL, PRIMARY KEY (sp, k),"
	" CHECK (octet_length(k) BETWEEN 1 AND 511));"
	"CREATE TABLE vaultd.dup (sp int2 NOT NULL, k bytea NOT NULL,"
	" v bytea NOT NULL, PRIMARY KEY (sp, k, v),"
	" CHECK (octet_length(k) BETWEEN 1 AND 511),"
	" CHECK (octet_length(v) BETWEEN 1 AND 511));"
	"ALTER TABLE vaultd.kv ALTER COLUMN v SET STORAGE EXTERNAL;";

static const struct store_ops pg_ops;

/* ------------------------------------------------------------ transactions */

static void
txn_init(struct pg_txn *t, struct pg_store *st, struct pg_conn *c, bool write)
{
	memset(t, 0, sizeof(*t));
	t->base.st = &st->base;
	t->st = st;
	t->c = c;
	t->top = t;
	t->write = write;
}

/* Frees the cursors left open in t: they die with it. */
static void
txn_close_cursors(struct pg_txn *t)
{
	while (t->cursors != NULL) {
		struct pg_cursor *cur = t->cursors;

		t->cursors = cur->next;
		pg_cursor_free(cur);
	}
}

/* Long readers may hold at most half the pool: the rest stays for calls. */
static unsigned
bulk_max(const struct pg_store *st)
{
	return st->pool_size / 2 > 0 ? st->pool_size / 2 : 1;
}

/* Whether a reader (bulk: a long one) must wait; under st->mu. */
static bool
pool_full(const struct pg_store *st, bool bulk)
{
	return (st->idle == NULL && st->nopen >= st->pool_size) ||
	    (bulk && st->nbulk >= bulk_max(st));
}

/*
 * A pool connection, waiting up to POOL_WAIT_MS when all are busy, or
 * (bulk) when long readers hold their share.
 */
static int
pool_take(struct pg_store *st, struct pg_conn **out, bool bulk)
{
	struct timespec until = time_after_ms(POOL_WAIT_MS);
	int r = 0;

	*out = NULL;
	pthread_mutex_lock(&st->mu);
	while (pool_full(st, bulk))
		if (pthread_cond_timedwait(&st->cv, &st->mu, &until) != 0 &&
		    pool_full(st, bulk)) {
			pthread_mutex_unlock(&st->mu);
			log_warn("begin read: too many concurrent readers (%u "
			    "connections; %s)", st->pool_size, bulk ?
			    "long readers hold their half" : "all busy");
			return VAULT_ERR_LIMIT;
		}
	st->nbulk += bulk;
	if (st->idle != NULL) {
		*out = st->idle;
		st->idle = (*out)->next;
		(*out)->bulk = bulk;
		pthread_mutex_unlock(&st->mu);
		return 0;
	}
	st->nopen++;
	pthread_mutex_unlock(&st->mu);
	if ((r = pg_conn_open(st, "vaultd-reader", out)) != 0) {
		pthread_mutex_lock(&st->mu);
		st->nopen--;
		st->nbulk -= bulk;
		pthread_cond_broadcast(&st->cv);
		pthread_mutex_unlock(&st->mu);
		return r;
	}
	(*out)->bulk = bulk;
	return 0;
}

/* Returns c to the pool, or closes it when it is bad. */
static void
pool_give(struct pg_store *st, struct pg_conn *c)
{
	pthread_mutex_lock(&st->mu);
	st->nbulk -= c->bulk;
	c->bulk = false;
	if (c->bad) {
		st->nopen--;
		pg_conn_close(c);
	} else {
		c->next = st->idle;
		st->idle = c;
	}
	/* Waiters differ (bulk or not): each checks its own condition. */
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

/* BEGIN on c; on failure c is left idle (or bad). */
static int
conn_begin(struct pg_store *st, struct pg_conn *c, const char *sql,
    const char *what)
{
	int r;

	pg_conn_settle(c);
	if (c->bad) {
		log_error("%s: lost the connection to PostgreSQL", what);
		return VAULT_ERR_UNAVAILABLE;
	}
	if ((r = pg_conn_exec(st, c, sql, PGRES_TUPLES_OK, what)) != 0 &&
	    !c->bad && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		c->bad = pg_conn_exec(st, c, "ROLLBACK", PGRES_COMMAND_OK,
		    "rollback") != 0;
	if (r == 0)
		c->used = true;
	return r;
}

/*
 * A connection that served before and fails at BEGIN died while idle (a
 * failover, a proxy's idle timeout, an administrator): nothing was done
 * on it, so the begin goes on with another, up to a new one. A new
 * connection that fails at BEGIN fails the begin.
 */
static bool
begin_again(const struct pg_conn *c, int r)
{
	return r == VAULT_ERR_UNAVAILABLE && c->bad && c->used;
}

static int
read_begin(struct store *s, struct store_txn **txn, bool bulk)
{
	struct pg_store *st = pg_store(s);
	struct pg_conn *c;
	bool again;
	int r;

	*txn = NULL;
	if (st->base.failed)
		return VAULT_ERR_UNAVAILABLE;
	for (;;) {
		if ((r = pool_take(st, &c, bulk)) != 0)
			return r;
		r = conn_begin(st, c, BEGIN_READ, "begin read");
		if (r == 0)
			break;
		again = begin_again(c, r);
		pool_give(st, c);	/* closes c when it is bad */
		if (!again)
			return r;
		log_info("begin read: reconnecting to PostgreSQL");
	}
	txn_init(&c->txn, st, c, false);
	*txn = &c->txn.base;
	return 0;
}

static int
pg_read_begin(struct store *s, struct store_txn **txn)
{
	return read_begin(s, txn, false);
}

static int
pg_read_begin_bulk(struct store *s, struct store_txn **txn)
{
	return read_begin(s, txn, true);
}

static void
pg_read_end(struct store_txn *txn)
{
	struct pg_txn *t = pg_txn(txn);
	struct pg_conn *c;

	if (t == NULL)
		return;
	c = t->c;
	txn_close_cursors(t);
	pg_keep_clear(&c->keep);
	/* The reply is read at the next begin: ending costs no round trip. */
	if (!c->bad && PQsendQuery(c->pg, "ROLLBACK") != 1)
		c->bad = true;
	else
		c->ending = true;
	pool_give(t->st, c);
}

/* The writer's connection is ours until release_writer. */
static void
claim_writer(struct pg_store *st)
{
	pthread_mutex_lock(&st->wmu);
	while (st->writing)
		pthread_cond_wait(&st->wcv, &st->wmu);
	st->writing = true;
	pthread_mutex_unlock(&st->wmu);
}

static void
release_writer(struct pg_store *st)
{
	if (st->writer != NULL && st->writer->bad) {
		pg_conn_close(st->writer);
		st->writer = NULL;
	}
	pthread_mutex_lock(&st->wmu);
	st->writing = false;
	pthread_cond_signal(&st->wcv);
	pthread_mutex_unlock(&st->wmu);
}

static int
pg_write_begin(struct store *s, struct store_txn **txn)
{
	struct pg_store *st = pg_store(s);
	struct pg_conn *c;
	char begin[sizeof(BEGIN_WRITE) + 16];
	bool again;
	int r;

	*txn = NULL;
	if (st->base.failed)
		return VAULT_ERR_UNAVAILABLE;
	/* An integer of the settings: no data in the SQL. */
	snprintf(begin, sizeof(begin), BEGIN_WRITE,
	    st->timeout_s > 0 ? st->timeout_s : 1);
	claim_writer(st);
	do {
		if (st->writer == NULL &&
		    (r = pg_conn_open(st, "vaultd-writer", &st->writer)) != 0) {
			release_writer(st);
			return r;
		}
		c = st->writer;
		r = conn_begin(st, c, begin, "begin write");
		if ((again = begin_again(c, r))) {
			pg_conn_close(c);
			st->writer = NULL;
			log_info("begin write: reconnecting to PostgreSQL");
		}
	} while (again);
	if (r != 0) {
		release_writer(st);
		return r;
	}
	txn_init(&c->txn, st, c, true);
	*txn = &c->txn.base;
	return 0;
}

static int
pg_nested_begin(struct store_txn *parent, struct store_txn **child)
{
	struct pg_txn *p = pg_txn(parent), *t;
	char sql[32];
	int r;

	*child = NULL;
	if (!p->top->write) {
		log_error("begin nested: the parent is a read transaction");
		return VAULT_ERR_STORE;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return VAULT_ERR_NOMEM;
	*t = (struct pg_txn){ .base = { &p->st->base }, .st = p->st,
	    .c = p->c, .top = p->top, .depth = p->depth + 1, .write = true };
	snprintf(sql, sizeof(sql), "SAVEPOINT s%u", t->depth);
	if ((r = pg_conn_exec(t->st, t->c, sql, PGRES_COMMAND_OK,
	    "begin nested write")) != 0) {
		free(t);
		return r;
	}
	*child = &t->base;
	return 0;
}

/* Ends a nested transaction: released into its parent, or rolled back. */
static int
nested_end(struct pg_txn *t, bool keep_writes)
{
	char sql[80];
	int r;

	txn_close_cursors(t);
	if (keep_writes)
		snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT s%u", t->depth);
	else
		snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT s%u; "
		    "RELEASE SAVEPOINT s%u", t->depth, t->depth);
	r = t->c->bad ? VAULT_ERR_UNAVAILABLE : pg_conn_exec(t->st, t->c, sql,
	    PGRES_COMMAND_OK, keep_writes ? "commit nested write" :
	    "abort nested write");
	/*
	 * A release that failed (a statement of the child failed, and its
	 * job ignored it) leaves the whole transaction failed: rolling the
	 * savepoint back keeps the parent, and the group, usable.
	 */
	if (r != 0 && keep_writes && !t->c->bad) {
		snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT s%u; "
		    "RELEASE SAVEPOINT s%u", t->depth, t->depth);
		(void)pg_conn_exec(t->st, t->c, sql, PGRES_COMMAND_OK,
		    "abort nested write");
	}
	if (!keep_writes || r != 0)
		pg_wrote(t);	/* the rollback changed what reads see */
	free(t);
	return r;
}

/*
 * Notices during COMMIT. PostgreSQL answers a COMMIT whose wait for the
 * synchronous standby was cancelled (pg_cancel_backend, a statement_timeout
 * set on the role or database) with success and a WARNING ("canceling wait
 * for synchronous replication ... already committed locally"): the commit
 * is on the primary only, and a failover loses it. Any WARNING at COMMIT
 * is taken as that (messages may be translated; the severity is not).
 */
static void
commit_notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (sev != NULL && strcmp(sev, "WARNING") == 0)
		*(bool *)arg = true;
	log_debug("PostgreSQL notice at COMMIT: %s", msg != NULL ? msg : "?");
}

/*
 * Commits the group. A connection lost during COMMIT leaves its outcome
 * unknown: reported as VAULT_ERR_UNAVAILABLE, never as success. The group
 * may have committed; a caller that retries is covered by the request's
 * idempotency (request ids, NOOVERWRITE puts), as after a crash. So is a
 * commit PostgreSQL made locally only (commit_notice): acknowledged, it
 * could be lost by a failover.
 */
static int
top_commit(struct pg_txn *t)
{
	struct pg_store *st = t->st;
	struct pg_conn *c = t->c;
	PQnoticeReceiver prev;
	PGresult *res;
	bool local_only = false;
	int r = 0;

	txn_close_cursors(t);
	pg_keep_clear(&c->keep);
	if (c->bad) {
		r = VAULT_ERR_UNAVAILABLE;
		goto out;
	}
	prev = PQsetNoticeReceiver(c->pg, commit_notice, &local_only);
	res = PQexec(c->pg, "COMMIT");
	/*
	 * libpq's default receiver, which passes notices to the processor
	 * (notice_to_debug), ignores its argument.
	 */
	PQsetNoticeReceiver(c->pg, prev, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = pg_err(st, c, res, "commit (outcome unknown if the "
		    "connection was lost)");
	} else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		/* PostgreSQL answers COMMIT of a failed transaction ROLLBACK. */
		log_error("commit: the transaction had failed; rolled back");
		r = VAULT_ERR_STORE;
	} else if (local_only) {
		log_error("commit: PostgreSQL warned at COMMIT (its wait for the "
		    "synchronous standby cancelled?): committed on the primary "
		    "only; outcome reported unknown");
		r = VAULT_ERR_UNAVAILABLE;
	}
	PQclear(res);
out:
	release_writer(st);
	return r;
}

static int
pg_commit(struct store_txn *txn, bool durable)
{
	struct pg_txn *t = pg_txn(txn);

	(void)durable;		/* every commit is durable: DURABILITY above */
	if (t->depth > 0)
		return nested_end(t, true);
	return top_commit(t);
}

static void
pg_abort(struct store_txn *txn)
{
	struct pg_txn *t = pg_txn(txn);

	if (t == NULL)
		return;
	if (!t->top->write) {		/* backend.h: abort ends any txn */
		pg_read_end(txn);
		return;
	}
	if (t->depth > 0) {
		(void)nested_end(t, false);
		return;
	}
	txn_close_cursors(t);
	pg_keep_clear(&t->c->keep);
	if (!t->c->bad)
		(void)pg_conn_exec(t->st, t->c, "ROLLBACK", PGRES_COMMAND_OK,
		    "abort write");
	release_writer(t->st);
}

/* ------------------------------------------------------------ get, put, del */

static int
pg_get(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, struct store_val *val)
{
	struct pg_txn *t = pg_txn(txn);
	struct args a = { .sp = sp, .k = key, .klen = klen };
	PGresult *res;
	int r;

	val->data = NULL;
	val->len = 0;
	if ((r = pg_check_len(klen, sp, "get", "key")) != 0)
		return r;
	if ((res = pg_run(t, pg_stmt_for(sp, KV_GET), &a, "get", &r)) == NULL)
		return r;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return VAULT_ERR_NOT_FOUND;
	}
	val->data = PQgetvalue(res, 0, 0);
	val->len = (size_t)PQgetlength(res, 0, 0);
	pg_keep_push(&t->top->c->keep, res);
	return 0;
}

static int
put_dup(struct pg_txn *t, struct args *a, unsigned flags)
{
	long n = 0;
	int r;

	if ((r = pg_check_len(a->vlen, a->sp, "put", "value")) != 0)
		return r;
	if (flags & STORE_APPEND) {
		log_error("put (%s): STORE_APPEND in a dup space",
		    store_space_name(a->sp));
		return VAULT_ERR_STORE;
	}
	if ((r = pg_run_write(t, flags & STORE_NOOVERWRITE ? DUP_INSERT_NEWKEY :
	    DUP_INSERT, a, "put", &n)) != 0)
		return r;
	/* No row: the key (NOOVERWRITE) or the value (NODUPDATA) exists. */
	if (n == 0 && (flags & (STORE_NOOVERWRITE | STORE_NODUPDATA)))
		return VAULT_ERR_EXISTS;
	return 0;
}

static int
pg_put(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *data, size_t len, unsigned flags)
{
	struct pg_txn *t = pg_txn(txn);
	struct args a = { .sp = sp, .k = key, .klen = klen,
	    .v = data != NULL ? data : "", .vlen = len };
	enum stmt s = KV_UPSERT;
	long n = 0;
	int r;

	if ((r = pg_check_len(klen, sp, "put", "key")) != 0)
		return r;
	if (len > 0x7fffffff) {
		log_error("put (%s): a value of %zu bytes", store_space_name(sp),
		    len);
		return VAULT_ERR_LIMIT;
	}
	if (store_space_dup(sp))
		return put_dup(t, &a, flags);
	if (flags & STORE_APPEND)
		s = KV_APPEND;
	else if (flags & STORE_NOOVERWRITE)
		s = KV_INSERT;
	if ((r = pg_run_write(t, s, &a, "put", &n)) != 0)
		return r;
	if (n == 1)
		return 0;
	if (s == KV_APPEND) {
		log_error("put (%s): an append out of order (the key sorts "
		    "before the last one)", store_space_name(sp));
		return VAULT_ERR_STORE;
	}
	return VAULT_ERR_EXISTS;
}

static int
pg_del(struct store_txn *txn, enum store_space sp, const void *key,
    size_t klen, const void *dup, size_t duplen)
{
	struct pg_txn *t = pg_txn(txn);
	struct args a = { .sp = sp, .k = key, .klen = klen };
	enum stmt s = KV_DEL;
	long n = 0;
	int r;

	if ((r = pg_check_len(klen, sp, "delete", "key")) != 0)
		return r;
	if (store_space_dup(sp)) {
		s = dup != NULL ? DUP_DEL1 : DUP_DELKEY;
		a.v = dup;
		a.vlen = duplen;
	}
	if ((r = pg_run_write(t, s, &a, "delete", &n)) != 0)
		return r;
	return n > 0 ? 0 : VAULT_ERR_NOT_FOUND;
}

/*
 * The least key above every key that starts with p: p without its trailing
 * 0xff bytes, its last byte plus one. 0 when there is none (p is all
 * 0xff): the range is then open.
 */
static size_t
prefix_successor(const uint8_t *p, size_t len, uint8_t *out)
{
	while (len > 0 && p[len - 1] == 0xff)
		len--;
	if (len == 0)
		return 0;
	memcpy(out, p, len);
	out[len - 1]++;
	return len;
}

static int
pg_delete_prefix(struct store_txn *txn, enum store_space sp,
    const void *prefix, size_t len)
{
	struct pg_txn *t = pg_txn(txn);
	uint8_t end[STORE_KEY_MAX];
	struct args a = { .sp = sp, .k = prefix, .klen = len };
	long n;
	int r;

	if ((r = pg_check_len(len, sp, "delete by prefix", "prefix")) != 0)
		return r;
	a.vlen = prefix_successor(prefix, len, end);
	a.v = a.vlen > 0 ? end : NULL;
	return pg_run_write(t, pg_stmt_for(sp, a.v != NULL ? KV_DEL_RANGE :
	    KV_DEL_FROM), &a, "delete by prefix", &n);
}

static int
pg_count(struct store_txn *txn, enum store_space sp, size_t *n)
{
	struct args a = { .sp = sp };
	PGresult *res;
	int r;

	*n = 0;
	if ((res = pg_run(pg_txn(txn), pg_stmt_for(sp, KV_COUNT), &a, "count",
	    &r)) == NULL)
		return r;
	if (PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8)
		*n = (size_t)store_get_u64((const uint8_t *)PQgetvalue(res, 0,
		    0));
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------ the store */

static int
pg_sync(struct store *s)
{
	return s->failed ? VAULT_ERR_UNAVAILABLE : 0;
}

static int
pg_room(struct store *s)
{
	return s->failed ? VAULT_ERR_UNAVAILABLE : 0;
}

static int
pg_usage(struct store *s, struct store_usage *out)
{
	struct pg_store *st = pg_store(s);
	struct pg_conn *c;
	PGresult *res;
	int r;

	memset(out, 0, sizeof(*out));
	out->high_water_pct = s->high_water_pct;
	if ((r = pool_take(st, &c, false)) != 0)
		return r;
	pg_conn_settle(c);
	res = PQexecParams(c->pg, "SELECT pg_database_size(current_database())",
	    0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    PQgetlength(res, 0, 0) == 8) {
		out->file_bytes = store_get_u64((const uint8_t *)PQgetvalue(res,
		    0, 0));
		out->used_bytes = out->file_bytes;
	} else {
		r = pg_err(st, c, res, "usage");
	}
	PQclear(res);
	pool_give(st, c);
	return r;
}

static void
pg_close(struct store *s)
{
	struct pg_store *st = pg_store(s);

	if (st == NULL)
		return;
	while (st->idle != NULL) {
		struct pg_conn *c = st->idle;

		st->idle = c->next;
		pg_conn_close(c);
	}
	pg_conn_close(st->writer);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->wmu);
	pthread_cond_destroy(&st->wcv);
	/* It may hold the database's password. */
	if (st->conninfo != NULL)
		sodium_memzero(st->conninfo, strlen(st->conninfo));
	free(st->conninfo);
	free(st);
}

static const struct store_ops pg_ops = {
	.name = "postgresql",
	.close = pg_close,
	.read_begin = pg_read_begin,
	.read_begin_bulk = pg_read_begin_bulk,
	.read_end = pg_read_end,
	.write_begin = pg_write_begin,
	.nested_begin = pg_nested_begin,
	.commit = pg_commit,
	.abort = pg_abort,
	.get = pg_get,
	.put = pg_put,
	.del = pg_del,
	.delete_prefix = pg_delete_prefix,
	.count = pg_count,
	.cursor_open = pg_cursor_open,
	.cursor_close = pg_cursor_close,
	.cursor_get = pg_cursor_get,
	.cursor_replace = pg_cursor_replace,
	.cursor_del = pg_cursor_del,
	.sync = pg_sync,
	.room = pg_room,
	.usage = pg_usage,
};

/* ------------------------------------------------------------ open */

static const char tables_sql[] =
	"SELECT to_regclass('vaultd.kv') IS NOT NULL AND "
	"to_regclass('vaultd.dup') IS NOT NULL";

/* Whether the schema's tables exist, as c sees them. */
static int
tables_exist(struct pg_store *st, struct pg_conn *c, bool *exist)
{
	PGresult *res = PQexec(c->pg, tables_sql);
	int r = 0;

	*exist = false;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		*exist = PQgetvalue(res, 0, 0)[0] == 't';
	else
		r = pg_err(st, c, res, "look for the store's tables");
	PQclear(res);
	return r;
}

/* Records the format version in a new store; checks it in an old one. */
static int
check_format(struct pg_txn *t)
{
	struct store_val v;
	uint8_t fmt[4];
	uint32_t found;
	int r;

	r = meta_get(&t->base, META_STORE_FORMAT, 0, &v);
	if (r == VAULT_ERR_NOT_FOUND) {
		store_put_u32(fmt, STORE_FORMAT_VERSION);
		return meta_put(&t->base, META_STORE_FORMAT, 0, fmt,
		    sizeof(fmt));
	}
	if (r != 0)
		return r;
	if (v.len != 4) {
		log_error("the store's format version record is corrupt (%zu "
		    "bytes, not 4); refusing it", v.len);
		return VAULT_ERR_STATE;
	}
	/*
	 * Formats 1 to 2 (a key space, which the tables hold already), 2
	 * to 3 and 3 to 4 (consumers move to one values record and a bound
	 * header as they are written) change nothing in the tables
	 * (migrate.c): only the record changes, so an older vaultd refuses.
	 */
	if ((found = store_get_u32(v.data)) >= 1 && found < 4 &&
	    STORE_FORMAT_VERSION == 4) {
		log_info("store format %u upgraded to %u (nothing to change in "
		    "the tables)", found, (unsigned)STORE_FORMAT_VERSION);
		store_put_u32(fmt, STORE_FORMAT_VERSION);
		return meta_put(&t->base, META_STORE_FORMAT, 0, fmt,
		    sizeof(fmt));
	}
	if (found != STORE_FORMAT_VERSION) {
		log_error("store format %u; this vaultd reads %u: %s", found,
		    (unsigned)STORE_FORMAT_VERSION, found < STORE_FORMAT_VERSION ?
		    "the PostgreSQL backend has no migration for it" : "it was "
		    "written by a newer vaultd: run that version");
		return VAULT_ERR_STATE;
	}
	return 0;
}

/* In the writers' locked transaction: the schema, then the format record. */
static int
create_or_check(struct pg_store *st)
{
	struct store_txn *txn;
	bool exist;
	int r;

	if ((r = pg_write_begin(&st->base, &txn)) != 0)
		return r;
	if ((r = tables_exist(st, st->writer, &exist)) != 0)
		goto fail;
	if (!exist) {
		log_info("creating the store's schema \"vaultd\" in PostgreSQL");
		if ((r = pg_conn_exec(st, st->writer, schema_sql, PGRES_COMMAND_OK,
		    "create the schema")) != 0)
			goto fail;
	}
	if ((r = check_format(pg_txn(txn))) != 0)
		goto fail;
	return pg_commit(txn, true);
fail:
	pg_abort(txn);
	return r;
}

static int
store_new(struct pg_store **out, const struct store_params *p)
{
	struct pg_store *st;
	PQconninfoOption *opts;
	char *why = NULL;

	*out = NULL;
	/*
	 * Parsed here so that libpq's own complaint, which may quote the
	 * string, password included ("invalid percent-encoded token"), is
	 * never logged.
	 */
	if (p->conninfo == NULL ||
	    (opts = PQconninfoParse(p->conninfo, &why)) == NULL) {
		PQfreemem(why);
		log_error("postgresql_conninfo is %s", p->conninfo == NULL ?
		    "missing" : "not a valid libpq connection string");
		return VAULT_ERR_CONFIG;
	}
	PQconninfoFree(opts);
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->conninfo = strdup(p->conninfo)) == NULL) {
		free(st);
		return VAULT_ERR_NOMEM;
	}
	st->base.ops = &pg_ops;
	st->pool_size = p->pool_size > 0 ? p->pool_size : 8;
	st->timeout_s = p->connect_timeout_s;
	atomic_init(&st->unreachable, false);
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	pthread_mutex_init(&st->wmu, NULL);
	pthread_cond_init(&st->wcv, NULL);
	*out = st;
	return 0;
}

int
store_open_pg(struct store **out, const struct store_params *p)
{
	struct pg_store *st;
	int r;

	*out = NULL;
	if ((r = store_new(&st, p)) != 0)
		return r;
	if ((r = create_or_check(st)) != 0) {
		pg_close(&st->base);
		return r;
	}
	*out = &st->base;
	return 0;
}

int
store_exists_pg(const struct store_params *p, bool *exists)
{
	struct pg_store *st;
	struct pg_conn *c = NULL;
	struct store_txn *txn = NULL;
	struct store_val v;
	bool tables;
	int r;

	*exists = false;
	if ((r = store_new(&st, p)) != 0)
		return r;
	if ((r = pg_conn_open(st, "vaultd-reader", &c)) != 0)
		goto out;
	if ((r = tables_exist(st, c, &tables)) != 0 || !tables)
		goto out;
	c->next = NULL;
	st->idle = c;		/* the pool's first connection */
	st->nopen = 1;
	c = NULL;
	if ((r = pg_read_begin(&st->base, &txn)) != 0)
		goto out;
	r = meta_get(txn, META_STORE_FORMAT, 0, &v);
	*exists = r == 0;
	if (r == VAULT_ERR_NOT_FOUND)
		r = 0;
	pg_read_end(txn);
out:
	pg_conn_close(c);
	pg_close(&st->base);
	return r;
}
