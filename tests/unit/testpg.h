/*
 * The unit tests' PostgreSQL side: each test gets a fresh database on the
 * server VAULT_TEST_PG_CONNINFO names (scripts/pg-scratch starts one), so
 * tests are independent. Without the variable the PostgreSQL runs are
 * skipped, and say so. The tests open the backend with store_open_pg
 * (store_pg.h): store_open_params does the same for STORE_KIND_POSTGRESQL.
 */
#ifndef VAULT_TESTPG_H
#define VAULT_TESTPG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/store.h"
#include "store/store_pg.h"
#include "testutil.h"

/* The server's conninfo, or NULL: PostgreSQL tests are skipped. */
static inline const char *
testpg_conninfo(void)
{
	const char *ci = getenv("VAULT_TEST_PG_CONNINFO");

	return ci != NULL && *ci != '\0' ? ci : NULL;
}

/* Says once, on stdout, that the PostgreSQL runs are skipped. */
static inline void
testpg_say_skipped(const char *what)
{
	printf("[  SKIPPED ] %s on PostgreSQL: VAULT_TEST_PG_CONNINFO is not "
	    "set (d=$(mktemp -d); export VAULT_TEST_PG_CONNINFO=$("
	    "scripts/pg-scratch start $d))\n", what);
}

/* Runs one SQL command of the test's own (no parameters); aborts on error. */
static inline void
testpg_exec(const char *conninfo, const char *sql)
{
	PGconn *pg = PQconnectdb(conninfo);
	PGresult *res;

	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "testpg: cannot connect: %s", PQerrorMessage(pg));
		abort();
	}
	res = PQexec(pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "testpg: %s: %s", sql, PQerrorMessage(pg));
		abort();
	}
	PQclear(res);
	PQfinish(pg);
}

/* A test database: its name and the conninfo that opens it. */
struct testpg_db {
	char name[64];
	char conninfo[1024];
};

static inline void
testpg_create(struct testpg_db *db)
{
	static unsigned n;
	const char *ci = testpg_conninfo();
	char sql[128];

	snprintf(db->name, sizeof(db->name), "vaulttest_%d_%u", (int)getpid(),
	    n++);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->name);
	testpg_exec(ci, sql);
	/* A later keyword wins: the test's database. */
	snprintf(db->conninfo, sizeof(db->conninfo), "%s dbname=%s", ci,
	    db->name);
}

static inline void
testpg_drop(struct testpg_db *db)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
	    db->name);
	testpg_exec(testpg_conninfo(), sql);
}

/* The store's parameters for db. */
static inline struct store_params
testpg_params(const struct testpg_db *db)
{
	return (struct store_params){ .kind = STORE_KIND_POSTGRESQL,
	    .conninfo = db->conninfo, .pool_size = 4, .connect_timeout_s = 5 };
}

/*
 * Terminates the backends of db whose application_name is app
 * ("vaultd-writer", "vaultd-reader"), waiting until they are gone;
 * returns how many.
 */
static inline int
testpg_terminate(const struct testpg_db *db, const char *app)
{
	PGconn *pg = PQconnectdb(testpg_conninfo());
	const char *params[2] = { db->name, app };
	PGresult *res;
	int n;

	if (PQstatus(pg) != CONNECTION_OK)
		abort();
	res = PQexecParams(pg, "SELECT count(*) FILTER (WHERE "
	    "pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE "
	    "datname = $1 AND application_name = $2", 2, NULL, params, NULL,
	    NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		abort();
	n = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(pg);
	return n;
}

/* The server's data directory (a superuser's SHOW), into buf. */
static inline void
testpg_data_dir(char *buf, size_t len)
{
	PGconn *pg = PQconnectdb(testpg_conninfo());
	PGresult *res;

	if (PQstatus(pg) != CONNECTION_OK)
		abort();
	res = PQexec(pg, "SHOW data_directory");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		abort();
	snprintf(buf, len, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(pg);
}

/* ------------------------------------------------ a vault on PostgreSQL */

/*
 * Whether store_open_params opens PostgreSQL stores (the vault's way to
 * one): false while store.c refuses them.
 */
static inline bool
testpg_vault_supported(void)
{
	struct store_params p = { .kind = STORE_KIND_POSTGRESQL,
	    .conninfo = testpg_conninfo(), .pool_size = 1,
	    .connect_timeout_s = 1 };
	bool exists;

	return store_exists_params(&p, &exists) != VAULT_ERR_UNIMPLEMENTED;
}

struct testpg_vault {
	struct test_vault tv;		/* first: a struct test_vault * to it */
	struct testpg_db db;
};

/* test_vault_new, the store in a fresh database (store_backend). */
static inline struct test_vault *
testpg_vault_new(void)
{
	struct testpg_vault *f = calloc(1, sizeof(*f));
	char extra[1400];

	if (f == NULL || crypto_init() != 0)
		abort();
	testpg_create(&f->db);
	snprintf(extra, sizeof(extra), "store_backend = \"postgresql\";\n"
	    "postgresql_conninfo = \"%s\";\npostgresql_pool = 4;\n"
	    "postgresql_connect_timeout_s = 5;\nreplica_name = \"unit\";\n",
	    f->db.conninfo);
	f->tv.dir = test_tmpdir();
	f->tv.cfg = test_config_extra(f->tv.dir, extra);
	if (vault_open(&f->tv.v, f->tv.cfg, VAULT_OPEN_CREATE) != 0)
		abort();
	return &f->tv;
}

static inline int
testpg_vault_setup(void **state)
{
	*state = testpg_vault_new();
	return 0;
}

static inline int
testpg_vault_teardown(void **state)
{
	struct testpg_vault *f = *state;

	vault_close(f->tv.v);
	config_free(f->tv.cfg);
	test_rmtree(f->tv.dir);
	free(f->tv.dir);
	testpg_drop(&f->db);
	free(f);
	return 0;
}

#endif
