/*
 * The PostgreSQL backend of store.h (libpq), for vaultd replicas sharing
 * one database. Everything vaultd writes here is already sealed by it:
 * PostgreSQL sees refs, wrapped keys and ciphertext only.
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
 * connect_timeout_s (a proxy moves to the new leader meanwhile); the
 * writer refuses a standby. Disk full is VAULT_ERR_NOSPACE, serialization
 * failures and deadlocks VAULT_ERR_UNAVAILABLE (retryable), corruption
 * (XX001, XX002) fails the store; the rest is VAULT_ERR_STORE. Logs carry
 * the SQLSTATE and the primary message, never a parameter.
 *
 * ROOM. PostgreSQL manages its own disk: store_room answers 0 unless the
 * store failed; a full disk shows as VAULT_ERR_NOSPACE on the write.
 * store_usage reports pg_database_size, map_bytes 0 (there is no map).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "util/log.h"
#include "util/timeutil.h"
#include "store/backend.h"
#include "store/meta.h"
#include "store/store_pg.h"

/* pg_advisory_xact_lock's key for the writer: "vaultdw1", big-endian. */
#define WRITER_LOCK "8530228277886089009"
#define BEGIN_WRITE "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; " \
	"SELECT pg_advisory_xact_lock(" WRITER_LOCK ")"
/* The trailing SELECT takes the snapshot now, not at the first read. */
#define BEGIN_READ "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1"

#define POOL_WAIT_MS 2000
#define RETRY_MS 250
#define BATCH_MIN 8
#define BATCH_MAX 256
#define KEEP_MAX 1024
#define KEEP_MIN 8
#define KEEP_BYTES ((size_t)32 << 20)

#define BYTEAOID 17
#define INT8OID 20
#define INT2OID 21

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

/*
 * The statements, prepared once per connection when first used. Every one
 * takes the same four parameters: $1 the space (int2), $2 a key, $3 a value
 * or a bound, $4 a row limit (int8); those a statement does not use are
 * NULL.
 */
enum stmt {
	KV_GET, KV_UPSERT, KV_INSERT, KV_APPEND, KV_UPDATE, KV_DEL,
	KV_DEL_RANGE, KV_DEL_FROM, KV_COUNT,
	KV_FIRST, KV_LAST, KV_GT, KV_GE, KV_LT,
	DUP_GET, DUP_INSERT, DUP_INSERT_NEWKEY, DUP_DEL1, DUP_DELKEY,
	DUP_DEL_RANGE, DUP_DEL_FROM, DUP_COUNT,
	DUP_FIRST, DUP_LAST, DUP_GT, DUP_GE, DUP_LT,
	STMTS
};

/* A dup space's counterpart of a kv statement (a read or a range delete). */
static const enum stmt dup_of[STMTS] = {
	[KV_GET] = DUP_GET, [KV_DEL_RANGE] = DUP_DEL_RANGE,
	[KV_DEL_FROM] = DUP_DEL_FROM, [KV_COUNT] = DUP_COUNT,
	[KV_FIRST] = DUP_FIRST, [KV_LAST] = DUP_LAST, [KV_GT] = DUP_GT,
	[KV_GE] = DUP_GE, [KV_LT] = DUP_LT,
};

static const char *const stmt_sql[STMTS] = {
	[KV_GET] = "SELECT v FROM vaultd.kv WHERE sp = $1 AND k = $2",
	[KV_UPSERT] = "INSERT INTO vaultd.kv (sp, k, v) VALUES ($1, $2, $3) "
	    "ON CONFLICT (sp, k) DO UPDATE SET v = EXCLUDED.v",
	[KV_INSERT] = "INSERT INTO vaultd.kv (sp, k, v) VALUES ($1, $2, $3) "
	    "ON CONFLICT DO NOTHING",
	[KV_APPEND] = "INSERT INTO vaultd.kv (sp, k, v) SELECT $1, $2, $3 "
	    "WHERE NOT EXISTS (SELECT 1 FROM vaultd.kv WHERE sp = $1 AND "
	    "k >= $2)",
	[KV_UPDATE] = "UPDATE vaultd.kv SET v = $3 WHERE sp = $1 AND k = $2",
	[KV_DEL] = "DELETE FROM vaultd.kv WHERE sp = $1 AND k = $2",
	[KV_DEL_RANGE] = "DELETE FROM vaultd.kv WHERE sp = $1 AND k >= $2 AND "
	    "k < $3",
	[KV_DEL_FROM] = "DELETE FROM vaultd.kv WHERE sp = $1 AND k >= $2",
	[KV_COUNT] = "SELECT count(*) FROM vaultd.kv WHERE sp = $1",
	[KV_FIRST] = "SELECT k, v FROM vaultd.kv WHERE sp = $1 ORDER BY k "
	    "LIMIT $4",
	[KV_LAST] = "SELECT k, v FROM vaultd.kv WHERE sp = $1 ORDER BY k DESC "
	    "LIMIT $4",
	[KV_GT] = "SELECT k, v FROM vaultd.kv WHERE sp = $1 AND k > $2 "
	    "ORDER BY k LIMIT $4",
	[KV_GE] = "SELECT k, v FROM vaultd.kv WHERE sp = $1 AND k >= $2 "
	    "ORDER BY k LIMIT $4",
	[KV_LT] = "SELECT k, v FROM vaultd.kv WHERE sp = $1 AND k < $2 "
	    "ORDER BY k DESC LIMIT $4",
	[DUP_GET] = "SELECT v FROM vaultd.dup WHERE sp = $1 AND k = $2 "
	    "ORDER BY v LIMIT 1",
	[DUP_INSERT] = "INSERT INTO vaultd.dup (sp, k, v) VALUES ($1, $2, $3) "
	    "ON CONFLICT DO NOTHING",
	[DUP_INSERT_NEWKEY] = "INSERT INTO vaultd.dup (sp, k, v) "
	    "SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM vaultd.dup "
	    "WHERE sp = $1 AND k = $2)",
	[DUP_DEL1] = "DELETE FROM vaultd.dup WHERE sp = $1 AND k = $2 AND "
	    "v = $3",
	[DUP_DELKEY] = "DELETE FROM vaultd.dup WHERE sp = $1 AND k = $2",
	[DUP_DEL_RANGE] = "DELETE FROM vaultd.dup WHERE sp = $1 AND k >= $2 "
	    "AND k < $3",
	[DUP_DEL_FROM] = "DELETE FROM vaultd.dup WHERE sp = $1 AND k >= $2",
	[DUP_COUNT] = "SELECT count(*) FROM vaultd.dup WHERE sp = $1",
	[DUP_FIRST] = "SELECT k, v FROM vaultd.dup WHERE sp = $1 "
	    "ORDER BY k, v LIMIT $4",
	[DUP_LAST] = "SELECT k, v FROM vaultd.dup WHERE sp = $1 "
	    "ORDER BY k DESC, v DESC LIMIT $4",
	/* (sp, k, v) as a row: the primary key's index serves the bound. */
	[DUP_GT] = "SELECT k, v FROM vaultd.dup WHERE sp = $1 AND "
	    "(sp, k, v) > ($1, $2, $3) ORDER BY k, v LIMIT $4",
	[DUP_GE] = "SELECT k, v FROM vaultd.dup WHERE sp = $1 AND "
	    "(sp, k, v) >= ($1, $2, $3) ORDER BY k, v LIMIT $4",
	[DUP_LT] = "SELECT k, v FROM vaultd.dup WHERE sp = $1 AND "
	    "(sp, k, v) < ($1, $2, $3) ORDER BY k DESC, v DESC LIMIT $4",
};

/* The results a transaction keeps for its store_vals (LIFETIME above). */
struct keep {
	PGresult *r[KEEP_MAX];
	unsigned head, n;
	size_t bytes;
};

struct pg_cursor;
struct pg_conn;

struct pg_txn {
	struct store_txn base;
	struct pg_store *st;
	struct pg_conn *c;
	struct pg_txn *top;		/* itself at the top level */
	unsigned depth;			/* savepoint s<depth>; 0: top level */
	bool write;
	struct pg_cursor *cursors;	/* open in this transaction */
	/* Top level: bumped by every write, so cursors drop their batches. */
	unsigned long long gen;
};

struct pg_conn {
	PGconn *pg;
	unsigned long long prepared;	/* bit s: statement s prepared here */
	bool bad;			/* lost or unusable: close, never reuse */
	bool used;			/* has served a transaction */
	bool ending;			/* a ROLLBACK sent, its reply unread */
	struct pg_txn txn;		/* the top-level transaction on it */
	struct keep keep;
	struct pg_conn *next;		/* the pool's idle list */
};

struct pg_store {
	struct store base;
	char *conninfo;
	unsigned pool_size, timeout_s;
	pthread_mutex_t mu;		/* the read pool */
	pthread_cond_t cv;
	struct pg_conn *idle;
	unsigned nopen;
	pthread_mutex_t wmu;		/* the writer's connection */
	pthread_cond_t wcv;
	bool writing;
	struct pg_conn *writer;
};

struct pg_cursor {
	struct store_cursor base;
	struct pg_txn *t;
	struct pg_cursor *next;
	enum store_space sp;
	bool dup;
	PGresult *batch;
	int row;			/* on batch's row; -1: not in the batch */
	int nrows, dir;			/* dir: 1 ascending, -1 descending */
	bool complete;			/* nothing further in dir past the batch */
	unsigned long long gen;		/* the batch's write generation */
	int limit;			/* the next batch's size */
	/* The entry the cursor is on (deleted: stood on, now gone), a copy. */
	bool has_pos, deleted;
	size_t klen, vlen;
	uint8_t k[STORE_KEY_MAX], v[STORE_KEY_MAX];
};

static const struct store_ops pg_ops;

static struct pg_store *
pg_store(struct store *st)
{
	return (struct pg_store *)st;
}

static struct pg_txn *
pg_txn(struct store_txn *txn)
{
	return (struct pg_txn *)txn;
}

static struct pg_cursor *
pg_cursor(struct store_cursor *cur)
{
	return (struct pg_cursor *)cur;
}

/* ------------------------------------------------------------ kept results */

static void
keep_drop_oldest(struct keep *k)
{
	PGresult *r = k->r[k->head];

	k->bytes -= PQresultMemorySize(r);
	PQclear(r);
	k->head = (k->head + 1) % KEEP_MAX;
	k->n--;
}

static void
keep_push(struct keep *k, PGresult *r)
{
	size_t size = PQresultMemorySize(r);

	while (k->n >= KEEP_MIN && (k->n == KEEP_MAX ||
	    k->bytes + size > KEEP_BYTES))
		keep_drop_oldest(k);
	k->r[(k->head + k->n) % KEEP_MAX] = r;
	k->n++;
	k->bytes += size;
}

static void
keep_clear(struct keep *k)
{
	while (k->n > 0)
		keep_drop_oldest(k);
	k->head = 0;
}

/* ------------------------------------------------------------ errors */

/* The libpq message of c, one line, for the log. */
static const char *
conn_cause(PGconn *pg, char *buf, size_t len)
{
	const char *m = pg != NULL ? PQerrorMessage(pg) : "out of memory";
	size_t n;

	snprintf(buf, len, "%s", m != NULL && *m != '\0' ? m : "unknown");
	n = strcspn(buf, "\n");
	buf[n] = '\0';
	return buf;
}

/* Whether sqlstate means this connection must go (failover, shutdown). */
static bool
state_resets(const char *s)
{
	return strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 ||
	    strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0 ||
	    strcmp(s, "25006") == 0;
}

/*
 * Maps a failed result on c to a vault error and logs it (what names the
 * operation). A connection to drop is marked bad: it is closed when its
 * transaction ends, and the next begin connects again.
 */
static int
pg_err(struct pg_store *st, struct pg_conn *c, const PGresult *res,
    const char *what)
{
	const char *state = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char cause[256];

	if (msg == NULL)
		msg = conn_cause(c->pg, cause, sizeof(cause));
	if (state == NULL || PQstatus(c->pg) != CONNECTION_OK ||
	    state_resets(state)) {
		c->bad = true;
		log_error("%s: PostgreSQL %s: %s; reconnecting at the next "
		    "transaction", what, state != NULL ? state : "(no SQLSTATE)",
		    msg);
		return VAULT_ERR_UNAVAILABLE;
	}
	if (strcmp(state, "53100") == 0) {
		log_error("%s: PostgreSQL %s: disk full: %s", what, state, msg);
		return VAULT_ERR_NOSPACE;
	}
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
		log_warn("%s: PostgreSQL %s: %s (retryable)", what, state, msg);
		return VAULT_ERR_UNAVAILABLE;
	}
	if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0) {
		log_error("%s: PostgreSQL %s: fatal store error: %s; refusing "
		    "further calls", what, state, msg);
		st->base.failed = 1;
		return VAULT_ERR_UNAVAILABLE;
	}
	log_error("%s: PostgreSQL %s: %s", what, state, msg);
	return VAULT_ERR_STORE;
}

/* "op (space)", for the log. */
static const char *
what_sp(char *buf, size_t len, const char *op, enum store_space sp)
{
	snprintf(buf, len, "%s (%s)", op, store_space_name(sp));
	return buf;
}

/* ------------------------------------------------------------ connections */

static void
notice_to_debug(void *arg, const char *msg)
{
	(void)arg;
	log_debug("PostgreSQL notice: %.*s", (int)strcspn(msg, "\n"), msg);
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Whether the server is a standby (in recovery): the writer refuses one. */
static int
is_standby(PGconn *pg, bool *standby)
{
	PGresult *res = PQexec(pg, "SELECT pg_is_in_recovery()");
	int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;

	*standby = ok && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return ok ? 0 : -1;
}

/* One attempt; NULL with the cause in cause. */
static PGconn *
connect_once(struct pg_store *st, const char *role, char *cause, size_t len)
{
	char timeout[16];
	/*
	 * Defaults first: the conninfo (expanded from dbname) overrides them.
	 * The keepalives find a leader that vanished without a reset.
	 */
	const char *keys[] = { "application_name", "connect_timeout",
	    "keepalives_idle", "keepalives_interval", "keepalives_count",
	    "dbname", NULL };
	const char *vals[] = { role, timeout, "10", "5", "3", st->conninfo,
	    NULL };
	PGconn *pg;
	bool standby = false;

	snprintf(timeout, sizeof(timeout), "%u",
	    st->timeout_s < 2 ? 2 : st->timeout_s > 10 ? 10 : st->timeout_s);
	pg = PQconnectdbParams(keys, vals, 1);
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		conn_cause(pg, cause, len);
		PQfinish(pg);
		return NULL;
	}
	PQsetNoticeProcessor(pg, notice_to_debug, NULL);
	if (strcmp(role, "vaultd-writer") == 0 &&
	    (is_standby(pg, &standby) != 0 || standby)) {
		if (standby)
			snprintf(cause, len, "the server is a standby "
			    "(read-only)");
		else
			conn_cause(pg, cause, len);
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

/*
 * A new connection for role ("vaultd-writer", "vaultd-reader"), retried
 * for up to connect_timeout_s: after a failover the proxy needs a moment
 * to route to the new leader.
 */
static int
conn_open(struct pg_store *st, const char *role, struct pg_conn **out)
{
	long long deadline = time_monotonic_ms() + (long long)st->timeout_s * 1000;
	struct pg_conn *c;
	PGconn *pg;
	char cause[256];
	bool warned = false;

	*out = NULL;
	while ((pg = connect_once(st, role, cause, sizeof(cause))) == NULL) {
		if (time_monotonic_ms() >= deadline) {
			log_error("cannot connect to PostgreSQL: %s", cause);
			return VAULT_ERR_UNAVAILABLE;
		}
		if (!warned)
			log_warn("cannot connect to PostgreSQL: %s; retrying for "
			    "up to %u s", cause, st->timeout_s);
		warned = true;
		sleep_ms(RETRY_MS);
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		PQfinish(pg);
		return VAULT_ERR_NOMEM;
	}
	c->pg = pg;
	*out = c;
	return 0;
}

static void
conn_close(struct pg_conn *c)
{
	if (c == NULL)
		return;
	keep_clear(&c->keep);
	PQfinish(c->pg);
	free(c);
}

/* Reads the reply of the ROLLBACK read_end sent, before the next use. */
static void
conn_settle(struct pg_conn *c)
{
	PGresult *res;

	if (!c->ending)
		return;
	c->ending = false;
	while ((res = PQgetResult(c->pg)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			c->bad = true;
		PQclear(res);
	}
}

/* Runs a statement of no parameters (BEGIN, SAVEPOINT, ...). */
static int
conn_exec(struct pg_store *st, struct pg_conn *c, const char *sql,
    ExecStatusType want, const char *what)
{
	PGresult *res = PQexec(c->pg, sql);
	int r = 0;

	if (PQresultStatus(res) != want)
		r = pg_err(st, c, res, what);
	PQclear(res);
	return r;
}

/* ------------------------------------------------------------ statements */

struct args {
	enum store_space sp;
	const void *k;
	size_t klen;
	const void *v;			/* NULL: SQL NULL (unused) */
	size_t vlen;
	long long limit;
};

static int
prepare(struct pg_txn *t, enum stmt s, const char *name)
{
	static const Oid types[4] = { INT2OID, BYTEAOID, BYTEAOID, INT8OID };
	struct pg_conn *c = t->top->c;
	PGresult *res;
	int r = 0;

	if (c->prepared & (1ULL << s))
		return 0;
	res = PQprepare(c->pg, name, stmt_sql[s], 4, types);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		r = pg_err(t->st, c, res, "prepare");
	else
		c->prepared |= 1ULL << s;
	PQclear(res);
	return r;
}

/*
 * Runs statement s; the result (tuples or a command's) is the caller's, or
 * NULL with *r set. Binary parameters and results: nothing is quoted.
 */
static PGresult *
run(struct pg_txn *t, enum stmt s, const struct args *a, const char *op,
    int *r)
{
	static const int formats[4] = { 1, 1, 1, 1 };
	struct pg_conn *c = t->top->c;
	char name[16], what[64];
	uint8_t sp[2], limit[8];
	const char *vals[4] = { (const char *)sp, a->k, a->v,
	    (const char *)limit };
	int lens[4] = { 2, (int)a->klen, (int)a->vlen, 8 };
	PGresult *res;
	ExecStatusType status;

	sp[0] = 0;
	sp[1] = (uint8_t)a->sp;
	store_put_u64(limit, (uint64_t)a->limit);
	if (a->limit == 0)
		vals[3] = NULL;
	if (a->k == NULL)
		lens[1] = 0;
	if (a->v == NULL)
		lens[2] = 0;
	snprintf(name, sizeof(name), "vaultd_%d", (int)s);
	if ((*r = prepare(t, s, name)) != 0)
		return NULL;
	res = PQexecPrepared(c->pg, name, 4, vals, lens, formats, 1);
	status = PQresultStatus(res);
	if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
		*r = 0;
		return res;
	}
	*r = pg_err(t->st, c, res, what_sp(what, sizeof(what), op, a->sp));
	PQclear(res);
	return NULL;
}

/* The rows a command changed. */
static long
changed(PGresult *res)
{
	return strtol(PQcmdTuples(res), NULL, 10);
}

/* A write ran: results kept for reads die now, cursors read again. */
static void
wrote(struct pg_txn *t)
{
	t->top->gen++;
	keep_clear(&t->top->c->keep);
}

/* Runs a write; *n the rows it changed. */
static int
run_write(struct pg_txn *t, enum stmt s, const struct args *a, const char *op,
    long *n)
{
	PGresult *res;
	int r;

	if (!t->top->write) {
		log_error("%s (%s): a write in a read transaction", op,
		    store_space_name(a->sp));
		return VAULT_ERR_STORE;
	}
	res = run(t, s, a, op, &r);
	if (res != NULL)
		*n = changed(res);
	PQclear(res);
	wrote(t);
	return r;
}

static enum stmt
stmt_for(enum store_space sp, enum stmt kv)
{
	return store_space_dup(sp) ? dup_of[kv] : kv;
}

static int
check_len(size_t len, enum store_space sp, const char *op, const char *which)
{
	if (len >= 1 && len <= STORE_KEY_MAX)
		return 0;
	log_error("%s (%s): a %s of %zu bytes (1..%d)", op,
	    store_space_name(sp), which, len, STORE_KEY_MAX);
	return VAULT_ERR_STORE;
}

/* ------------------------------------------------------------ transactions */

static void cursor_free(struct pg_cursor *cur);

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
		cursor_free(cur);
	}
}

/* A pool connection, waiting up to POOL_WAIT_MS when all are busy. */
static int
pool_take(struct pg_store *st, struct pg_conn **out)
{
	struct timespec until = time_after_ms(POOL_WAIT_MS);
	int r = 0;

	*out = NULL;
	pthread_mutex_lock(&st->mu);
	while (st->idle == NULL && st->nopen >= st->pool_size)
		if (pthread_cond_timedwait(&st->cv, &st->mu, &until) != 0 &&
		    st->idle == NULL && st->nopen >= st->pool_size) {
			pthread_mutex_unlock(&st->mu);
			log_warn("begin read: too many concurrent readers (all %u "
			    "connections busy)", st->pool_size);
			return VAULT_ERR_LIMIT;
		}
	if (st->idle != NULL) {
		*out = st->idle;
		st->idle = (*out)->next;
		pthread_mutex_unlock(&st->mu);
		return 0;
	}
	st->nopen++;
	pthread_mutex_unlock(&st->mu);
	if ((r = conn_open(st, "vaultd-reader", out)) != 0) {
		pthread_mutex_lock(&st->mu);
		st->nopen--;
		pthread_cond_signal(&st->cv);
		pthread_mutex_unlock(&st->mu);
	}
	return r;
}

/* Returns c to the pool, or closes it when it is bad. */
static void
pool_give(struct pg_store *st, struct pg_conn *c)
{
	pthread_mutex_lock(&st->mu);
	if (c->bad) {
		st->nopen--;
		conn_close(c);
	} else {
		c->next = st->idle;
		st->idle = c;
	}
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

/* BEGIN on c; on failure c is left idle (or bad). */
static int
conn_begin(struct pg_store *st, struct pg_conn *c, const char *sql,
    const char *what)
{
	int r;

	conn_settle(c);
	if (c->bad) {
		log_error("%s: lost the connection to PostgreSQL", what);
		return VAULT_ERR_UNAVAILABLE;
	}
	if ((r = conn_exec(st, c, sql, PGRES_TUPLES_OK, what)) != 0 &&
	    !c->bad && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		c->bad = conn_exec(st, c, "ROLLBACK", PGRES_COMMAND_OK,
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
pg_read_begin(struct store *s, struct store_txn **txn)
{
	struct pg_store *st = pg_store(s);
	struct pg_conn *c;
	bool again;
	int r;

	*txn = NULL;
	if (st->base.failed)
		return VAULT_ERR_UNAVAILABLE;
	for (;;) {
		if ((r = pool_take(st, &c)) != 0)
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

static void
pg_read_end(struct store_txn *txn)
{
	struct pg_txn *t = pg_txn(txn);
	struct pg_conn *c;

	if (t == NULL)
		return;
	c = t->c;
	txn_close_cursors(t);
	keep_clear(&c->keep);
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
		conn_close(st->writer);
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
	bool again;
	int r;

	*txn = NULL;
	if (st->base.failed)
		return VAULT_ERR_UNAVAILABLE;
	claim_writer(st);
	do {
		if (st->writer == NULL &&
		    (r = conn_open(st, "vaultd-writer", &st->writer)) != 0) {
			release_writer(st);
			return r;
		}
		c = st->writer;
		r = conn_begin(st, c, BEGIN_WRITE, "begin write");
		if ((again = begin_again(c, r))) {
			conn_close(c);
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
	if ((r = conn_exec(t->st, t->c, sql, PGRES_COMMAND_OK,
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
	r = t->c->bad ? VAULT_ERR_UNAVAILABLE : conn_exec(t->st, t->c, sql,
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
		(void)conn_exec(t->st, t->c, sql, PGRES_COMMAND_OK,
		    "abort nested write");
	}
	if (!keep_writes || r != 0)
		wrote(t);	/* the rollback changed what reads see */
	free(t);
	return r;
}

/*
 * Commits the group. A connection lost during COMMIT leaves its outcome
 * unknown: reported as VAULT_ERR_UNAVAILABLE, never as success. The group
 * may have committed; a caller that retries is covered by the request's
 * idempotency (request ids, NOOVERWRITE puts), as after a crash.
 */
static int
top_commit(struct pg_txn *t)
{
	struct pg_store *st = t->st;
	struct pg_conn *c = t->c;
	PGresult *res;
	int r = 0;

	txn_close_cursors(t);
	keep_clear(&c->keep);
	if (c->bad) {
		r = VAULT_ERR_UNAVAILABLE;
		goto out;
	}
	res = PQexec(c->pg, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = pg_err(st, c, res, "commit (outcome unknown if the "
		    "connection was lost)");
	} else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		/* PostgreSQL answers COMMIT of a failed transaction ROLLBACK. */
		log_error("commit: the transaction had failed; rolled back");
		r = VAULT_ERR_STORE;
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
	if (t->depth > 0) {
		(void)nested_end(t, false);
		return;
	}
	txn_close_cursors(t);
	keep_clear(&t->c->keep);
	if (!t->c->bad)
		(void)conn_exec(t->st, t->c, "ROLLBACK", PGRES_COMMAND_OK,
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
	if ((r = check_len(klen, sp, "get", "key")) != 0)
		return r;
	if ((res = run(t, stmt_for(sp, KV_GET), &a, "get", &r)) == NULL)
		return r;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return VAULT_ERR_NOT_FOUND;
	}
	val->data = PQgetvalue(res, 0, 0);
	val->len = (size_t)PQgetlength(res, 0, 0);
	keep_push(&t->top->c->keep, res);
	return 0;
}

static int
put_dup(struct pg_txn *t, struct args *a, unsigned flags)
{
	long n = 0;
	int r;

	if ((r = check_len(a->vlen, a->sp, "put", "value")) != 0)
		return r;
	if (flags & STORE_APPEND) {
		log_error("put (%s): STORE_APPEND in a dup space",
		    store_space_name(a->sp));
		return VAULT_ERR_STORE;
	}
	if ((r = run_write(t, flags & STORE_NOOVERWRITE ? DUP_INSERT_NEWKEY :
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

	if ((r = check_len(klen, sp, "put", "key")) != 0)
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
	if ((r = run_write(t, s, &a, "put", &n)) != 0)
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

	if ((r = check_len(klen, sp, "delete", "key")) != 0)
		return r;
	if (store_space_dup(sp)) {
		s = dup != NULL ? DUP_DEL1 : DUP_DELKEY;
		a.v = dup;
		a.vlen = duplen;
	}
	if ((r = run_write(t, s, &a, "delete", &n)) != 0)
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

	if ((r = check_len(len, sp, "delete by prefix", "prefix")) != 0)
		return r;
	a.vlen = prefix_successor(prefix, len, end);
	a.v = a.vlen > 0 ? end : NULL;
	return run_write(t, stmt_for(sp, a.v != NULL ? KV_DEL_RANGE :
	    KV_DEL_FROM), &a, "delete by prefix", &n);
}

static int
pg_count(struct store_txn *txn, enum store_space sp, size_t *n)
{
	struct args a = { .sp = sp };
	PGresult *res;
	int r;

	*n = 0;
	if ((res = run(pg_txn(txn), stmt_for(sp, KV_COUNT), &a, "count",
	    &r)) == NULL)
		return r;
	if (PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8)
		*n = (size_t)store_get_u64((const uint8_t *)PQgetvalue(res, 0,
		    0));
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------ cursors */

static void
cursor_free(struct pg_cursor *cur)
{
	PQclear(cur->batch);
	free(cur);
}

static int
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

static void
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
		keep_push(&cur->t->top->c->keep, cur->batch);
		cur->batch = NULL;
	}
	cursor_free(cur);
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
	if ((res = run(cur->t, stmt_for(cur->sp, s), &a, "cursor",
	    &r)) == NULL)
		return r;
	if (batch_live(cur))
		keep_push(&cur->t->top->c->keep, cur->batch);
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

	if ((r = check_len(klen, cur->sp, "cursor", "key")) != 0)
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

static int
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

static int
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
	if ((r = run_write(cur->t, KV_UPDATE, &a, "replace at cursor",
	    &n)) != 0)
		return r;
	return n == 1 ? 0 : VAULT_ERR_NOT_FOUND;
}

static int
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
	if ((r = run_write(cur->t, cur->dup ? DUP_DEL1 : KV_DEL, &a,
	    "delete at cursor", &n)) != 0)
		return r;
	/* The position stays: CURRENT and NEXT read the entry after it. */
	cur->deleted = true;
	return n == 1 ? 0 : VAULT_ERR_NOT_FOUND;
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
	if ((r = pool_take(st, &c)) != 0)
		return r;
	conn_settle(c);
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
		conn_close(c);
	}
	conn_close(st->writer);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->wmu);
	pthread_cond_destroy(&st->wcv);
	free(st->conninfo);
	free(st);
}

static const struct store_ops pg_ops = {
	.name = "postgresql",
	.close = pg_close,
	.read_begin = pg_read_begin,
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
	if ((found = store_get_u32(v.data)) != STORE_FORMAT_VERSION) {
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
		if ((r = conn_exec(st, st->writer, schema_sql, PGRES_COMMAND_OK,
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

	*out = NULL;
	if (p->conninfo == NULL) {
		log_error("the PostgreSQL backend needs a conninfo");
		return VAULT_ERR_CONFIG;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->conninfo = strdup(p->conninfo)) == NULL) {
		free(st);
		return VAULT_ERR_NOMEM;
	}
	st->base.ops = &pg_ops;
	st->pool_size = p->pool_size > 0 ? p->pool_size : 8;
	st->timeout_s = p->connect_timeout_s;
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
	if ((r = conn_open(st, "vaultd-reader", &c)) != 0)
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
	conn_close(c);
	pg_close(&st->base);
	return r;
}
