/*
 * The PostgreSQL backend's own view: for store_pg*.c only. store_pg.c has
 * the design (its header comment), the transactions, gets, puts and
 * deletes, and the store; store_pg_conn.c the connections, the error
 * mapping and the prepared statements; store_pg_cursor.c the cursors.
 */
#ifndef VAULT_STORE_PG_INT_H
#define VAULT_STORE_PG_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store/backend.h"

#define BATCH_MIN 8
#define BATCH_MAX 256
#define KEEP_MAX 1024
#define KEEP_MIN (STORE_KEEP_READS + 1)	/* store.h: Lifetime */
#define KEEP_BYTES ((size_t)32 << 20)

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
	bool bulk;			/* taken by a long reader (pool_take) */
	struct pg_txn txn;		/* the top-level transaction on it */
	struct keep keep;
	struct pg_conn *next;		/* the pool's idle list */
};

struct pg_store {
	struct store base;
	char *conninfo;
	unsigned pool_size, timeout_s;
	/*
	 * An attempt to connect gave up after timeout_s, and none succeeded
	 * since: later attempts try once each (pg_conn_open).
	 */
	atomic_bool unreachable;
	unsigned nbulk;			/* connections long readers hold */
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

struct args {
	enum store_space sp;
	const void *k;
	size_t klen;
	const void *v;			/* NULL: SQL NULL (unused) */
	size_t vlen;
	long long limit;
};

static inline struct pg_store *
pg_store(struct store *st)
{
	return (struct pg_store *)st;
}

static inline struct pg_txn *
pg_txn(struct store_txn *txn)
{
	return (struct pg_txn *)txn;
}

static inline struct pg_cursor *
pg_cursor(struct store_cursor *cur)
{
	return (struct pg_cursor *)cur;
}

/* store_pg_conn.c */
void pg_keep_push(struct keep *k, PGresult *r);
void pg_keep_clear(struct keep *k);
int pg_err(struct pg_store *st, struct pg_conn *c, const PGresult *res,
    const char *what);
int pg_conn_open(struct pg_store *st, const char *role, struct pg_conn **out);
void pg_conn_close(struct pg_conn *c);
void pg_conn_settle(struct pg_conn *c);
int pg_conn_exec(struct pg_store *st, struct pg_conn *c, const char *sql,
    ExecStatusType want, const char *what);
PGresult *pg_run(struct pg_txn *t, enum stmt s, const struct args *a,
    const char *op, int *r);
int pg_run_write(struct pg_txn *t, enum stmt s, const struct args *a,
    const char *op, long *n);
void pg_wrote(struct pg_txn *t);
enum stmt pg_stmt_for(enum store_space sp, enum stmt kv);
int pg_check_len(size_t len, enum store_space sp, const char *op,
    const char *which);

/* store_pg_cursor.c: the cursor operations of struct store_ops. */
void pg_cursor_free(struct pg_cursor *cur);
int pg_cursor_open(struct store_txn *txn, enum store_space sp,
    struct store_cursor **cur);
void pg_cursor_close(struct store_cursor *cur);
int pg_cursor_get(struct store_cursor *cur, struct store_val *key,
    struct store_val *val, enum store_move op);
int pg_cursor_replace(struct store_cursor *cur, const void *data, size_t len);
int pg_cursor_del(struct store_cursor *cur);

#endif
