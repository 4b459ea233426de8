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

#endif
