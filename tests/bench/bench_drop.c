/*
 * DROP lists for scripts/bench (issue 18): a list file to process, and the
 * fair baseline's processing of it.
 *
 *   vaultbench drop-list --consumers N --lines L --out FILE
 *       writes an Email list as CalPrivacy delivers it ("ID,Hash", each
 *       address standardized, SHA-256 hashed, Base64): line k holds the
 *       email of bench consumer k when k < N and k is a multiple of 10,
 *       otherwise an address no consumer has. Prints the lines that match.
 *   vaultbench drop-pg --conninfo C --consumers N --list FILE --out FILE
 *       the fair baseline on the PostgreSQL tables of pg-put: an index
 *       drop_email (keyed hash, ref) of consumers 0..N-1, made before the
 *       clock starts; then, timed, what a competent engineer would run: the
 *       client reads the file, decodes each hash and keys it, COPY into a
 *       temporary table, one join, the matched consumers (one consumer to a
 *       hash) deleted with their attributes and index rows, and the report
 *       "Id,Status" written in the list's order, all in one transaction.
 *       Prints "drop-pg <lines> <seconds> <lines/s> <deleted>".
 *
 * The baseline does less than vaultd's ProcessDropList: no receipt, no
 * deletion ledger, audit entry or suppression mark, one commit for the
 * whole file where vaultd commits every batch of 1,000 lines.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "bench.h"

#define HASH_B64 sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, \
    sodium_base64_VARIANT_ORIGINAL)
#define KEYED_BYTES 32
#define COPY_CHUNK (1 << 16)

/* The baseline's index key: a vault key, as vaultd keys its index. */
static uint8_t drop_key[KEYED_BYTES];

static void
hash_email(const char *email, char b64[HASH_B64])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const uint8_t *)email, strlen(email));
	sodium_bin2base64(b64, HASH_B64, h, sizeof(h),
	    sodium_base64_VARIANT_ORIGINAL);
}

static void
keyed(const uint8_t h[crypto_hash_sha256_BYTES], char hex[2 * KEYED_BYTES + 1])
{
	uint8_t k[KEYED_BYTES];

	crypto_generichash(k, sizeof(k), h, crypto_hash_sha256_BYTES, drop_key,
	    sizeof(drop_key));
	sodium_bin2hex(hex, 2 * KEYED_BYTES + 1, k, sizeof(k));
}

static int
cmd_list(long consumers, long lines, const char *out)
{
	char email[64], b64[HASH_B64];
	long matched = 0;
	FILE *f = fopen(out, "w");

	if (sodium_init() < 0)
		bench_die("libsodium does not initialize");
	if (f == NULL)
		bench_die("drop-list: cannot write --out");
	fprintf(f, "ID,Hash\n");
	for (long k = 0; k < lines; k++) {
		if (k < consumers && k % 10 == 0) {
			char vals[10][40];

			bench_attributes(k, vals);
			snprintf(email, sizeof(email), "%s", vals[0]);
			matched++;
		} else
			snprintf(email, sizeof(email), "nobody-%08ld@example.test", k);
		hash_email(email, b64);
		fprintf(f, "B%ld,%s\n", k, b64);
	}
	if (fclose(f) != 0)
		bench_die("drop-list: cannot write --out");
	printf("%ld\n", matched);
	return 0;
}

static void
exec_ok(PGconn *pg, const char *sql, ExecStatusType want)
{
	PGresult *res = PQexec(pg, sql);

	if (PQresultStatus(res) != want) {
		fprintf(stderr, "vaultbench: postgres: %s", PQerrorMessage(pg));
		exit(1);
	}
	PQclear(res);
}

/* COPY rows built by next(arg, buf, len) (0 at the end) into a table. */
static void
copy_in(PGconn *pg, const char *sql, int (*next)(void *, char *, size_t),
    void *arg)
{
	static char buf[COPY_CHUNK];
	size_t used = 0;
	PGresult *res;
	int n;

	exec_ok(pg, sql, PGRES_COPY_IN);
	while ((n = next(arg, buf + used, sizeof(buf) - used)) != 0) {
		if (n < 0) {		/* no room: send what is there first */
			if (used == 0 || PQputCopyData(pg, buf, (int)used) != 1)
				bench_die("postgres: COPY failed");
			used = 0;
			continue;
		}
		used += (size_t)n;
	}
	if ((used > 0 && PQputCopyData(pg, buf, (int)used) != 1) ||
	    PQputCopyEnd(pg, NULL) != 1)
		bench_die("postgres: COPY failed");
	res = PQgetResult(pg);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "vaultbench: postgres: %s", PQerrorMessage(pg));
		exit(1);
	}
	PQclear(res);
	while ((res = PQgetResult(pg)) != NULL)
		PQclear(res);
}

struct index_rows {
	long i, n;
};

/* A row of the index: the keyed hash of consumer i's email, its ref. */
static int
index_row(void *arg, char *buf, size_t len)
{
	struct index_rows *r = arg;
	uint8_t h[crypto_hash_sha256_BYTES], ref[32];
	char vals[10][40], kh[2 * KEYED_BYTES + 1], rh[65];
	int n;

	if (r->i == r->n)
		return 0;
	bench_attributes(r->i, vals);
	crypto_hash_sha256(h, (const uint8_t *)vals[0], strlen(vals[0]));
	keyed(h, kh);
	bench_pg_ref(r->i, ref);
	sodium_bin2hex(rh, sizeof(rh), ref, sizeof(ref));
	n = snprintf(buf, len, "\\\\x%s\t\\\\x%s\n", kh, rh);
	if (n < 0 || (size_t)n >= len)
		return -1;
	r->i++;
	return n;
}

struct list_rows {
	FILE *f;
	long line;
	char pending[256];
};

/* A row of the list: its line number, its ID, the keyed hash. */
static int
list_row(void *arg, char *buf, size_t len)
{
	struct list_rows *r = arg;
	uint8_t h[crypto_hash_sha256_BYTES];
	char kh[2 * KEYED_BYTES + 1], *comma;
	size_t hl;
	int n;

	if (r->pending[0] == '\0') {
		if (fgets(r->pending, sizeof(r->pending), r->f) == NULL)
			return 0;
		r->pending[strcspn(r->pending, "\r\n")] = '\0';
	}
	if ((comma = strchr(r->pending, ',')) == NULL)
		bench_die("drop-pg: a line without a comma");
	*comma = '\0';
	if (sodium_base642bin(h, sizeof(h), comma + 1, strlen(comma + 1), NULL,
	    &hl, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || hl != sizeof(h))
		bench_die("drop-pg: a hash that is not Base64 SHA-256");
	keyed(h, kh);
	n = snprintf(buf, len, "%ld\t%s\t\\\\x%s\n", r->line, r->pending, kh);
	*comma = ',';
	if (n < 0 || (size_t)n >= len)
		return -1;
	r->pending[0] = '\0';
	r->line++;
	return n;
}

static int
cmd_pg(const char *conninfo, long consumers, const char *list, const char *out)
{
	struct index_rows ir = { 0, consumers };
	struct list_rows lr = { 0 };
	PGconn *pg;
	PGresult *res;
	FILE *o;
	long deleted = 0;
	double t0, dt;
	char head[64];
	int n;

	if (sodium_init() < 0)
		bench_die("libsodium does not initialize");
	crypto_generichash(drop_key, sizeof(drop_key),
	    (const uint8_t *)"vaultbench fair baseline drop key", 33, NULL, 0);
	pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK)
		bench_die(PQerrorMessage(pg));
	/* The index a put would have kept, made before the clock starts. */
	exec_ok(pg, "DROP TABLE IF EXISTS drop_email; CREATE TABLE drop_email "
	    "(h bytea, ref bytea, PRIMARY KEY (h, ref))", PGRES_COMMAND_OK);
	copy_in(pg, "COPY drop_email FROM STDIN", index_row, &ir);
	exec_ok(pg, "ANALYZE drop_email; ANALYZE consumers; ANALYZE attrs",
	    PGRES_COMMAND_OK);

	if ((lr.f = fopen(list, "r")) == NULL ||
	    fgets(head, sizeof(head), lr.f) == NULL)
		bench_die("drop-pg: cannot read --list");
	if ((o = fopen(out, "w")) == NULL)
		bench_die("drop-pg: cannot write --out");
	t0 = bench_now();
	exec_ok(pg, "BEGIN; CREATE TEMP TABLE drop_list (n int, id text, h "
	    "bytea) ON COMMIT DROP", PGRES_COMMAND_OK);
	copy_in(pg, "COPY drop_list FROM STDIN", list_row, &lr);
	exec_ok(pg, "CREATE TEMP TABLE drop_match ON COMMIT DROP AS SELECT "
	    "l.n, count(d.ref) AS k, (array_agg(d.ref))[1] AS ref FROM drop_list l LEFT "
	    "JOIN drop_email d USING (h) GROUP BY l.n; "
	    "DELETE FROM attrs a USING drop_match m WHERE m.k = 1 AND a.ref = "
	    "m.ref; DELETE FROM drop_email d USING drop_match m WHERE m.k = 1 "
	    "AND d.ref = m.ref", PGRES_COMMAND_OK);
	res = PQexec(pg, "DELETE FROM consumers c USING drop_match m WHERE "
	    "m.k = 1 AND c.ref = m.ref");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		bench_die(PQerrorMessage(pg));
	deleted = atol(PQcmdTuples(res));
	PQclear(res);
	res = PQexec(pg, "SELECT l.id, CASE m.k WHEN 0 THEN 5 WHEN 1 THEN 3 "
	    "ELSE 4 END FROM drop_list l JOIN drop_match m USING (n) ORDER BY "
	    "l.n");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		bench_die(PQerrorMessage(pg));
	fprintf(o, "Id,Status\n");
	n = PQntuples(res);
	for (int i = 0; i < n; i++)
		fprintf(o, "%s,%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
	PQclear(res);
	exec_ok(pg, "COMMIT", PGRES_COMMAND_OK);
	if (fclose(o) != 0)
		bench_die("drop-pg: cannot write --out");
	dt = bench_now() - t0;
	fclose(lr.f);
	PQfinish(pg);
	printf("drop-pg %ld %.3f %.0f %ld\n", lr.line, dt, (double)lr.line / dt,
	    deleted);
	return 0;
}

int
bench_drop_main(const char *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "conninfo", required_argument, NULL, 'c' },
		{ "consumers", required_argument, NULL, 'N' },
		{ "lines", required_argument, NULL, 'l' },
		{ "list", required_argument, NULL, 'L' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conninfo = NULL, *list = NULL, *out = NULL;
	long consumers = 0, lines = 0;
	int ch;

	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': conninfo = optarg; break;
		case 'N': consumers = atol(optarg); break;
		case 'l': lines = atol(optarg); break;
		case 'L': list = optarg; break;
		case 'o': out = optarg; break;
		default: bench_die("bad option");
		}
	}
	if (consumers < 1 || out == NULL)
		bench_die("--consumers and --out are required");
	if (strcmp(cmd, "drop-list") == 0 && lines > 0)
		return cmd_list(consumers, lines, out);
	if (strcmp(cmd, "drop-pg") == 0 && conninfo != NULL && list != NULL)
		return cmd_pg(conninfo, consumers, list, out);
	bench_die("usage: vaultbench drop-list --consumers N --lines L --out F | "
	    "drop-pg --conninfo C --consumers N --list F --out F");
	return 1;
}
