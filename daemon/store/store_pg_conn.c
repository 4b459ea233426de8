/*
 * The PostgreSQL backend's connections, error mapping and prepared
 * statements (store_pg.c has the design).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/timeutil.h"
#include "store/store_pg_int.h"

#define RETRY_MS 250

#define BYTEAOID 17
#define INT8OID 20
#define INT2OID 21

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

void
pg_keep_push(struct keep *k, PGresult *r)
{
	size_t size = PQresultMemorySize(r);

	while (k->n >= KEEP_MIN && (k->n == KEEP_MAX ||
	    k->bytes + size > KEEP_BYTES))
		keep_drop_oldest(k);
	k->r[(k->head + k->n) % KEEP_MAX] = r;
	k->n++;
	k->bytes += size;
}

void
pg_keep_clear(struct keep *k)
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
int
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
	/* Serialization failure, deadlock, the writers' lock not granted. */
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "55P03") == 0) {
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
	/*
	 * Readers refuse a standby too: one that lags would show a snapshot
	 * older than the last commit, which the contract forbids.
	 */
	if (is_standby(pg, &standby) != 0 || standby) {
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
 * to route to the new leader. Once an attempt has given up, the database
 * is known to be down for longer than that: later attempts try once (one
 * libpq connect: at once when the server refuses, up to its
 * connect_timeout when the host does not answer), so that a database that
 * stays down does not hold every call, and each step of the shutdown, for
 * the whole timeout. The first success ends that.
 */
int
pg_conn_open(struct pg_store *st, const char *role, struct pg_conn **out)
{
	long long deadline = time_monotonic_ms() + (long long)st->timeout_s * 1000;
	bool warned = false;
	struct pg_conn *c;
	PGconn *pg;
	char cause[256];

	*out = NULL;
	while ((pg = connect_once(st, role, cause, sizeof(cause))) == NULL) {
		if (atomic_load(&st->unreachable))
			return VAULT_ERR_UNAVAILABLE;	/* logged when it went */
		if (time_monotonic_ms() >= deadline) {
			/* Logged once, by whichever attempt gave up first. */
			if (!atomic_exchange(&st->unreachable, true))
				log_error("cannot connect to PostgreSQL: %s; "
				    "until a connection succeeds, calls try "
				    "once", cause);
			return VAULT_ERR_UNAVAILABLE;
		}
		if (!warned)
			log_warn("cannot connect to PostgreSQL: %s; retrying for "
			    "up to %u s", cause, st->timeout_s);
		warned = true;
		sleep_ms(RETRY_MS);
	}
	if (atomic_exchange(&st->unreachable, false))
		log_info("connected to PostgreSQL again");
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		PQfinish(pg);
		return VAULT_ERR_NOMEM;
	}
	c->pg = pg;
	*out = c;
	return 0;
}

void
pg_conn_close(struct pg_conn *c)
{
	if (c == NULL)
		return;
	pg_keep_clear(&c->keep);
	PQfinish(c->pg);
	free(c);
}

/* Reads the reply of the ROLLBACK read_end sent, before the next use. */
void
pg_conn_settle(struct pg_conn *c)
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
int
pg_conn_exec(struct pg_store *st, struct pg_conn *c, const char *sql,
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
PGresult *
pg_run(struct pg_txn *t, enum stmt s, const struct args *a, const char *op,
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
void
pg_wrote(struct pg_txn *t)
{
	t->top->gen++;
	pg_keep_clear(&t->top->c->keep);
}

/*
 * Runs a write; *n the rows it changed. One that changed no row (an insert
 * of a pair already there, ON CONFLICT DO NOTHING) leaves what reads kept
 * and the cursors' batches valid: the audit index inserts each entry's
 * pair without a look-up, most of them already there, while a cursor
 * walks the log.
 */
int
pg_run_write(struct pg_txn *t, enum stmt s, const struct args *a, const char *op,
    long *n)
{
	PGresult *res;
	long rows = -1;
	int r;

	if (!t->top->write) {
		log_error("%s (%s): a write in a read transaction", op,
		    store_space_name(a->sp));
		return VAULT_ERR_STORE;
	}
	res = pg_run(t, s, a, op, &r);
	if (res != NULL)
		*n = rows = changed(res);
	PQclear(res);
	if (r != 0 || rows != 0)
		pg_wrote(t);
	return r;
}

enum stmt
pg_stmt_for(enum store_space sp, enum stmt kv)
{
	return store_space_dup(sp) ? dup_of[kv] : kv;
}

int
pg_check_len(size_t len, enum store_space sp, const char *op, const char *which)
{
	if (len >= 1 && len <= STORE_KEY_MAX)
		return 0;
	log_error("%s (%s): a %s of %zu bytes (1..%d)", op,
	    store_space_name(sp), which, len, STORE_KEY_MAX);
	return VAULT_ERR_STORE;
}
