/*
 * Client workloads for scripts/bench, against vaultd over gRPC and against
 * PostgreSQL through libpq (the fair baseline: envelope encryption in the
 * client, see below), with the same concurrency:
 *
 *   vaultbench api-put|api-get|api-noop|api-export --addr A[,B...] --token-file F
 *   vaultbench pg-put|pg-get|pg-export --conninfo C
 *     [--clients N] [--consumers N] [--from K] [--seconds S]
 *
 * With several addresses (replicas of one vault), client n talks to the
 * (n mod count)-th.
 * put writes consumers from..from+consumers-1, 10 attributes each, one
 * durable request per consumer; get, noop and export run for --seconds on
 * random consumers below --consumers. Prints one line:
 *   <name> <operations> <seconds> <operations/s> <p50 ms> <p99 ms>
 */
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "grpc/health/v1/health.pb-c.h"
#include "vault/v1/vault.pb-c.h"
#include "bench.h"
#include "vault_client.h"

#define MAX_CLIENTS 64
#define MAX_ADDRS 16
#define MAX_SAMPLES 400000

struct wl {
	const char *cmd, *addr, *token_file, *conninfo;
	char *addrs[MAX_ADDRS];		/* --addr split at commas */
	int n_addrs;
	char token[256];
	int clients;
	long consumers, from;
	double seconds;
};

struct client {
	const struct wl *w;
	int n;
	long first, last;		/* put: the consumers of this client */
	unsigned seed;
	double *lat;
	size_t n_lat;
	int failed;
};

void
bench_attributes(long i, char vals[10][40])
{
	static const char *const names_dev[] = { "mobile", "desktop", "tablet", "tv", "other" };
	static const char *const bands[] = { "low", "lower_middle", "middle", "upper_middle", "high" };
	unsigned s = (unsigned)i * 2654435761u;

	snprintf(vals[0], 40, "user-%08ld@example.test", i);
	snprintf(vals[1], 40, "%05u", rand_r(&s) % 90000 + 10000);
	snprintf(vals[2], 40, "%u", rand_r(&s) % 70 + 18);
	snprintf(vals[3], 40, "%s", names_dev[rand_r(&s) % 5]);
	snprintf(vals[4], 40, "%s", bands[rand_r(&s) % 5]);
	snprintf(vals[5], 40, "%u", rand_r(&s) % 30);
	snprintf(vals[6], 40, "20%02u-%02u-%02u", 20 + rand_r(&s) % 6, rand_r(&s) % 12 + 1,
	    rand_r(&s) % 28 + 1);
	snprintf(vals[7], 40, "%s", rand_r(&s) % 2 ? "true" : "false");
	snprintf(vals[8], 40, "group_%c", 'a' + rand_r(&s) % 4);
	snprintf(vals[9], 40, "%s", rand_r(&s) % 3 ? "false" : "true");
}

const char *const bench_attr_names[10] = { "email", "zip", "age", "device",
    "income_band", "purchases_90d", "last_purchase", "email_opt_in",
    "ethnicity", "converted" };

void
bench_consumer_id(long i, char *buf, size_t len)
{
	snprintf(buf, len, "user-%08ld@example.test", i);
}

/* ------------------------------------------------------------- vaultd */

static int
api_op(struct client *c, struct vc *vc, long i)
{
	const char *cmd = c->w->cmd;
	ProtobufCMessage *resp = NULL;
	struct vc_status st;
	char id[64], vals[10][40];
	int r;

	bench_consumer_id(i, id, sizeof(id));
	if (strcmp(cmd, "api-put") == 0) {
		Vault__V1__PutAttributesRequest req = VAULT__V1__PUT_ATTRIBUTES_REQUEST__INIT;
		Vault__V1__Attribute a[10], *p[10];

		bench_attributes(i, vals);
		for (int j = 0; j < 10; j++) {
			vault__v1__attribute__init(&a[j]);
			a[j].name = (char *)bench_attr_names[j];
			a[j].value = vals[j];
			p[j] = &a[j];
		}
		req.consumer_id = id;
		req.n_attributes = 10;
		req.attributes = p;
		r = vc_unary(vc, "/vault.v1.Consumers/PutAttributes", &req.base,
		    &vault__v1__put_attributes_response__descriptor, &resp, &st, 60000);
	} else if (strcmp(cmd, "api-get") == 0) {
		Vault__V1__GetAttributesRequest req = VAULT__V1__GET_ATTRIBUTES_REQUEST__INIT;

		req.consumer_id = id;
		req.purpose = "service";
		r = vc_unary(vc, "/vault.v1.Consumers/GetAttributes", &req.base,
		    &vault__v1__get_attributes_response__descriptor, &resp, &st, 60000);
	} else if (strcmp(cmd, "api-export") == 0) {
		Vault__V1__ExportConsumerRequest req = VAULT__V1__EXPORT_CONSUMER_REQUEST__INIT;

		req.consumer_id = id;
		r = vc_unary(vc, "/vault.v1.Consumers/ExportConsumer", &req.base,
		    &vault__v1__export_consumer_response__descriptor, &resp, &st, 60000);
	} else {
		Grpc__Health__V1__HealthCheckRequest req =
		    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

		r = vc_unary(vc, "/grpc.health.v1.Health/Check", &req.base,
		    &grpc__health__v1__health_check_response__descriptor, &resp, &st,
		    60000);
	}
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (r != 0)
		fprintf(stderr, "vaultbench: %s: %s\n", vc_code_name(st.code), st.message);
	return r;
}

/* ---------------------------------------------------------- PostgreSQL */

/*
 * The baseline a competent engineer builds on PostgreSQL: envelope
 * encryption in the application, as vaultd does it, and PostgreSQL storing
 * only ciphertext. A consumer is a row (ref, wrapped DEK) keyed by a keyed
 * BLAKE2b hash of its id; each attribute a row (ref, name, sealed value)
 * under the consumer's DEK (XChaCha20-Poly1305, the ref and name as
 * associated data). Prepared statements, binary bytea in and out, default
 * durability (fsync and synchronous_commit on). What it leaves out of
 * vaultd's work (consent, audit, suppression counts, history) makes it
 * cheaper, not dearer.
 */
#define PG_REF_BYTES 32
#define PG_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define PG_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES
#define PG_KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define PG_WRAPPED (PG_NONCE + PG_KEY_BYTES + PG_TAG)
#define PG_VALUE_MAX (PG_NONCE + 40 + PG_TAG)

/* The same in every process of one run, so a get opens what a put sealed. */
static uint8_t pg_master[PG_KEY_BYTES], pg_ref_key[32];

static void
pg_keys(void)
{
	static const char m[] = "vaultbench fair baseline master key";
	static const char k[] = "vaultbench fair baseline ref key";
	static bool done;	/* set before any client thread starts */

	if (done)
		return;
	done = true;
	crypto_generichash(pg_master, sizeof(pg_master), (const uint8_t *)m,
	    sizeof(m) - 1, NULL, 0);
	crypto_generichash(pg_ref_key, sizeof(pg_ref_key), (const uint8_t *)k,
	    sizeof(k) - 1, NULL, 0);
}

static void
pg_setup(const char *conninfo)
{
	PGconn *pg;
	PGresult *res;

	if (sodium_init() < 0)
		bench_die("libsodium does not initialize");
	pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK)
		bench_die(PQerrorMessage(pg));
	res = PQexec(pg, "CREATE TABLE IF NOT EXISTS consumers (ref bytea PRIMARY "
	    "KEY, dek bytea NOT NULL); CREATE TABLE IF NOT EXISTS attrs (ref "
	    "bytea, name text, value bytea NOT NULL, PRIMARY KEY (ref, name))");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		bench_die(PQerrorMessage(pg));
	PQclear(res);
	PQfinish(pg);
	pg_keys();
}

static void
pg_prepare(PGconn *pg, const char *name, const char *sql, int n,
    const Oid *types)
{
	PGresult *res = PQprepare(pg, name, sql, n, types);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		bench_die(PQerrorMessage(pg));
	PQclear(res);
}

static PGconn *
pg_open(const struct wl *w)
{
	PGconn *pg = PQconnectdb(w->conninfo);
	/* "update" has no use for the wrapped DEK ($2), but takes its slot. */
	static const Oid types[22] = { [1] = 17 /* bytea */ };
	char values[512], sql[1024];
	size_t off = 0;

	if (PQstatus(pg) != CONNECTION_OK)
		bench_die(PQerrorMessage(pg));
	for (int j = 0; j < 10; j++)
		off += (size_t)snprintf(values + off, sizeof(values) - off,
		    "%s($1::bytea, $%d::text, $%d::bytea)", j ? ", " : "", 3 + 2 * j,
		    4 + 2 * j);
	pg_prepare(pg, "dek", "SELECT dek FROM consumers WHERE ref = $1", 1,
	    NULL);
	/*
	 * A new consumer: its DEK row and its attributes in one statement
	 * (one commit); no attribute row when another writer created the
	 * consumer meanwhile (its DEK won: the client starts over).
	 */
	snprintf(sql, sizeof(sql), "WITH c AS (INSERT INTO consumers VALUES "
	    "($1, $2) ON CONFLICT (ref) DO NOTHING RETURNING ref) INSERT INTO "
	    "attrs SELECT v.* FROM (VALUES %s) v WHERE EXISTS (SELECT 1 FROM c)",
	    values);
	pg_prepare(pg, "create", sql, 22, NULL);
	snprintf(sql, sizeof(sql), "INSERT INTO attrs VALUES %s ON CONFLICT "
	    "(ref, name) DO UPDATE SET value = EXCLUDED.value", values);
	pg_prepare(pg, "update", sql, 22, types);
	pg_prepare(pg, "get", "SELECT c.dek, a.name, a.value FROM consumers c "
	    "JOIN attrs a USING (ref) WHERE c.ref = $1", 1, NULL);
	return pg;
}

/* The sealed value's associated data: the consumer's ref, then the name. */
static void
pg_ad(uint8_t *ad, size_t *adlen, const uint8_t *ref, const char *name)
{
	size_t n = strlen(name);

	memcpy(ad, ref, PG_REF_BYTES);
	memcpy(ad + PG_REF_BYTES, name, n);
	*adlen = PG_REF_BYTES + n;
}

static int
pg_put(PGconn *pg, const uint8_t *ref, long i)
{
	uint8_t dek[PG_KEY_BYTES], wrapped[PG_WRAPPED], ad[PG_REF_BYTES + 32];
	uint8_t sealed[10][PG_VALUE_MAX];
	const char *params[22];
	int lens[22], fmts[22];
	char vals[10][40];
	size_t adlen;
	PGresult *res;
	bool create;
	int ok;

	for (int j = 0; j < 22; j++)
		fmts[j] = 1;
	params[0] = (const char *)ref;
	lens[0] = PG_REF_BYTES;
	res = PQexecPrepared(pg, "dek", 1, params, lens, fmts, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "vaultbench: postgres: %s",
		    PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	create = PQntuples(res) == 0;
	if (create) {
		crypto_aead_xchacha20poly1305_ietf_keygen(dek);
		randombytes_buf(wrapped, PG_NONCE);
		crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + PG_NONCE, NULL,
		    dek, sizeof(dek), ref, PG_REF_BYTES, NULL, wrapped, pg_master);
	} else if (PQgetlength(res, 0, 0) != PG_WRAPPED ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(dek, NULL, NULL,
	    (const uint8_t *)PQgetvalue(res, 0, 0) + PG_NONCE,
	    PG_WRAPPED - PG_NONCE, ref, PG_REF_BYTES,
	    (const uint8_t *)PQgetvalue(res, 0, 0), pg_master) != 0) {
		PQclear(res);
		return -1;
	}
	PQclear(res);
	bench_attributes(i, vals);
	params[1] = (const char *)wrapped;
	lens[1] = PG_WRAPPED;
	for (int j = 0; j < 10; j++) {
		size_t n = strlen(vals[j]);

		pg_ad(ad, &adlen, ref, bench_attr_names[j]);
		randombytes_buf(sealed[j], PG_NONCE);
		crypto_aead_xchacha20poly1305_ietf_encrypt(sealed[j] + PG_NONCE,
		    NULL, (const uint8_t *)vals[j], n, ad, adlen, NULL, sealed[j],
		    dek);
		params[2 + 2 * j] = bench_attr_names[j];
		lens[2 + 2 * j] = (int)strlen(bench_attr_names[j]);
		params[3 + 2 * j] = (const char *)sealed[j];
		lens[3 + 2 * j] = (int)(PG_NONCE + n + PG_TAG);
	}
	sodium_memzero(dek, sizeof(dek));
	res = PQexecPrepared(pg, create ? "create" : "update", 22, params, lens,
	    fmts, 1);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fprintf(stderr, "vaultbench: postgres: %s",
		    PQresultErrorMessage(res));
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	/*
	 * Another writer made the consumer first: its DEK won, and a real
	 * client would start over. The bench's puts never share a consumer.
	 */
	if (ok && create && strcmp(PQcmdTuples(res), "10") != 0) {
		fprintf(stderr, "vaultbench: postgres: consumer %ld made "
		    "twice\n", i);
		ok = 0;
	}
	PQclear(res);
	return ok ? 0 : -1;
}

static int
pg_get(PGconn *pg, const uint8_t *ref)
{
	uint8_t dek[PG_KEY_BYTES], ad[PG_REF_BYTES + 32], plain[64];
	const char *params[1] = { (const char *)ref };
	int lens[1] = { PG_REF_BYTES }, fmts[1] = { 1 };
	size_t adlen;
	PGresult *res;
	int ok;

	res = PQexecPrepared(pg, "get", 1, params, lens, fmts, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fprintf(stderr, "vaultbench: postgres: %s",
		    PQresultErrorMessage(res));
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 10 &&
	    PQgetlength(res, 0, 0) == PG_WRAPPED &&
	    crypto_aead_xchacha20poly1305_ietf_decrypt(dek, NULL, NULL,
	    (const uint8_t *)PQgetvalue(res, 0, 0) + PG_NONCE,
	    PG_WRAPPED - PG_NONCE, ref, PG_REF_BYTES,
	    (const uint8_t *)PQgetvalue(res, 0, 0), pg_master) == 0;
	for (int j = 0; ok && j < PQntuples(res); j++) {
		const uint8_t *v = (const uint8_t *)PQgetvalue(res, j, 2);
		int vlen = PQgetlength(res, j, 2), nlen = PQgetlength(res, j, 1);
		char name[32];

		if (nlen >= (int)sizeof(name) || vlen < (int)(PG_NONCE + PG_TAG) ||
		    vlen - PG_NONCE - PG_TAG > (int)sizeof(plain)) {
			ok = 0;
			break;
		}
		memcpy(name, PQgetvalue(res, j, 1), (size_t)nlen);
		name[nlen] = '\0';
		pg_ad(ad, &adlen, ref, name);
		ok = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL,
		    v + PG_NONCE, (unsigned long long)vlen - PG_NONCE, ad, adlen,
		    v, dek) == 0;
	}
	sodium_memzero(dek, sizeof(dek));
	PQclear(res);
	return ok ? 0 : -1;
}

void
bench_pg_ref(long i, unsigned char ref[PG_REF_BYTES])
{
	char id[64];

	pg_keys();
	bench_consumer_id(i, id, sizeof(id));
	crypto_generichash(ref, PG_REF_BYTES, (const uint8_t *)id, strlen(id),
	    pg_ref_key, sizeof(pg_ref_key));
}

static int
pg_op(struct client *c, PGconn *pg, long i)
{
	uint8_t ref[PG_REF_BYTES];
	int r;

	bench_pg_ref(i, ref);
	r = strcmp(c->w->cmd, "pg-put") == 0 ? pg_put(pg, ref, i) :
	    pg_get(pg, ref);
	if (r != 0 && PQstatus(pg) != CONNECTION_OK)
		fprintf(stderr, "vaultbench: postgres: %s", PQerrorMessage(pg));
	return r;
}

/* ------------------------------------------------------------- driver */

static void *
client_main(void *arg)
{
	struct client *c = arg;
	const struct wl *w = c->w;
	bool pg = strncmp(w->cmd, "pg-", 3) == 0;
	bool put = strstr(w->cmd, "put") != NULL;
	struct vc *vc = NULL;
	PGconn *conn = NULL;
	double end = bench_now() + w->seconds;

	if (pg)
		conn = pg_open(w);
	else if (vc_open(&vc, w->addrs[c->n % w->n_addrs], w->token) != 0)
		bench_die("cannot open a channel");
	for (long i = c->first; put ? i < c->last : bench_now() < end; i++) {
		long who = put ? i : (long)(rand_r(&c->seed) % (unsigned)w->consumers);
		double t0 = bench_now();

		if ((pg ? pg_op(c, conn, who) : api_op(c, vc, who)) != 0) {
			c->failed++;
			continue;
		}
		if (c->n_lat < MAX_SAMPLES)
			c->lat[c->n_lat++] = bench_now() - t0;
	}
	if (conn != NULL)
		PQfinish(conn);
	vc_close(vc);
	return NULL;
}

static void
split_addrs(struct wl *w)
{
	char *copy = strdup(w->addr), *save = NULL;

	if (copy == NULL)
		bench_die("out of memory");
	for (char *a = strtok_r(copy, ",", &save); a != NULL;
	    a = strtok_r(NULL, ",", &save)) {
		if (w->n_addrs == MAX_ADDRS)
			bench_die("too many addresses in --addr");
		w->addrs[w->n_addrs++] = a;
	}
	if (w->n_addrs == 0)
		bench_die("--addr is empty");
}

int
bench_clients_main(const char *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "token-file", required_argument, NULL, 'k' },
		{ "conninfo", required_argument, NULL, 'c' },
		{ "clients", required_argument, NULL, 'n' },
		{ "consumers", required_argument, NULL, 'N' },
		{ "from", required_argument, NULL, 'F' },
		{ "seconds", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct wl w = { .cmd = cmd, .clients = 1, .consumers = 1000, .seconds = 3 };
	static struct client cs[MAX_CLIENTS];
	pthread_t th[MAX_CLIENTS];
	double t0, dt, *all;
	size_t n = 0;
	long ops = 0;
	int ch, failed = 0;

	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a': w.addr = optarg; break;
		case 'k': w.token_file = optarg; break;
		case 'c': w.conninfo = optarg; break;
		case 'n': w.clients = atoi(optarg); break;
		case 'N': w.consumers = atol(optarg); break;
		case 'F': w.from = atol(optarg); break;
		case 's': w.seconds = atof(optarg); break;
		default: bench_die("bad option");
		}
	}
	if (w.clients < 1 || w.clients > MAX_CLIENTS || w.consumers < 1)
		bench_die("an option is out of range");
	if (strncmp(cmd, "pg-", 3) == 0) {
		if (w.conninfo == NULL)
			bench_die("--conninfo is required");
		pg_setup(w.conninfo);
	} else {
		FILE *f = w.token_file ? fopen(w.token_file, "r") : NULL;

		if (w.addr == NULL || f == NULL || fgets(w.token, sizeof(w.token), f) == NULL)
			bench_die("--addr and a readable --token-file are required");
		fclose(f);
		w.token[strcspn(w.token, "\r\n")] = '\0';
		split_addrs(&w);
		vc_global_init();
	}
	t0 = bench_now();
	for (int i = 0; i < w.clients; i++) {
		cs[i] = (struct client){ &w, i, w.from + w.consumers * i / w.clients,
		    w.from + w.consumers * (i + 1) / w.clients, (unsigned)(i + 7),
		    malloc(MAX_SAMPLES * sizeof(double)), 0, 0 };
		pthread_create(&th[i], NULL, client_main, &cs[i]);
	}
	for (int i = 0; i < w.clients; i++) {
		pthread_join(th[i], NULL);
		failed += cs[i].failed;
		ops += (long)cs[i].n_lat;
	}
	dt = bench_now() - t0;
	if (failed > 0)
		bench_die("some operations failed");
	all = malloc(((size_t)ops + 1) * sizeof(double));
	for (int i = 0; i < w.clients; i++) {
		memcpy(all + n, cs[i].lat, cs[i].n_lat * sizeof(double));
		n += cs[i].n_lat;
		free(cs[i].lat);
	}
	qsort(all, n, sizeof(double), bench_cmp_double);
	printf("%s%d %ld %.3f %.0f %.3f %.3f\n", cmd, w.clients, ops, dt,
	    (double)ops / dt, n ? all[n / 2] * 1000 : 0, n ? all[n * 99 / 100] * 1000 : 0);
	free(all);
	if (strncmp(cmd, "pg-", 3) != 0)
		vc_global_shutdown();
	return 0;
}
