/*
 * vaultbench: the measuring tool behind scripts/bench.
 *
 *   vaultbench load  --dev-dir DIR --consumers N [--threads T]
 *       creates a development vault in DIR (as vaultd --dev would) and loads
 *       N synthetic consumers with 10 attributes each through the engine
 *   vaultbench scan  --dev-dir DIR [--purpose P] [--batch B]
 *       in-process limit: scan, DEK unwrap, decrypt and tokenize every
 *       consumer, page by page, without gRPC; prints consumers/s
 *   vaultbench fetch --addr A --token-file F [--purpose P] [--batch B] [--streams S]
 *       FetchFeatures over gRPC with S concurrent streams; prints consumers/s
 *
 * Each prints one line: "<what> <consumers> <seconds> <consumers/s>".
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "consumer.h"
#include "devmode.h"
#include "fetch.h"
#include "log.h"
#include "vault/v1/vault.pb-c.h"
#include "vault_client.h"

struct opts {
	const char *dev_dir, *addr, *token_file, *purpose;
	long consumers;
	int threads, batch, streams;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "vaultbench: %s\n", what);
	exit(1);
}

static struct vault *
open_dev(const char *dir, struct config **cfg)
{
	char path[4096], err[512];
	struct vault *v = NULL;

	if (crypto_init() != 0 || devmode_prepare(dir, path, sizeof(path)) != 0)
		die("cannot prepare the vault directory");
	if (config_load(cfg, path, err, sizeof(err)) != 0)
		die(err);
	if (vault_open(&v, *cfg, true) != 0)
		die("cannot open the vault");
	return v;
}

/* ------------------------------------------------------------------ load */

struct load_arg {
	struct vault *v;
	long from, to;
};

static const char *const devices[] = { "mobile", "desktop", "tablet", "tv", "other" };
static const char *const bands[] = { "low", "lower_middle", "middle", "upper_middle", "high" };
static const char *const groups[] = { "group_a", "group_b", "group_c", "group_d" };

static void *
load_main(void *p)
{
	struct load_arg *a = p;
	const struct schema *s = a->v->schema;
	char id[64], email[64], zip[16], age[8], purchases[8], date[16];
	unsigned seed = (unsigned)a->from;

	for (long i = a->from; i < a->to; i++) {
		const char *vals[10];
		const char *names[10] = { "email", "zip", "age", "device",
		    "income_band", "purchases_90d", "last_purchase", "email_opt_in",
		    "ethnicity", "converted" };
		struct attr_in in[10];
		uint8_t ref[CRYPTO_REF_BYTES];
		bool created;

		snprintf(id, sizeof(id), "bench-%08ld@example.test", i);
		snprintf(email, sizeof(email), "bench-%08ld@example.test", i);
		snprintf(zip, sizeof(zip), "%05d", rand_r(&seed) % 90000 + 10000);
		snprintf(age, sizeof(age), "%d", rand_r(&seed) % 70 + 18);
		snprintf(purchases, sizeof(purchases), "%d", rand_r(&seed) % 30);
		snprintf(date, sizeof(date), "20%02d-%02d-%02d", 20 + rand_r(&seed) % 6,
		    rand_r(&seed) % 12 + 1, rand_r(&seed) % 28 + 1);
		vals[0] = email; vals[1] = zip; vals[2] = age;
		vals[3] = devices[rand_r(&seed) % 5];
		vals[4] = bands[rand_r(&seed) % 5];
		vals[5] = purchases; vals[6] = date;
		vals[7] = rand_r(&seed) % 2 ? "true" : "false";
		vals[8] = groups[rand_r(&seed) % 4];
		vals[9] = rand_r(&seed) % 3 ? "false" : "true";
		for (int j = 0; j < 10; j++)
			in[j] = (struct attr_in){ schema_find_attr(s, names[j],
			    strlen(names[j])), vals[j], strlen(vals[j]) };
		if (consumer_put(a->v, id, strlen(id), in, 10, &created, ref) != 0)
			die("put failed");
	}
	return NULL;
}

static int
cmd_load(const struct opts *o)
{
	struct config *cfg = NULL;
	struct vault *v = open_dev(o->dev_dir, &cfg);
	pthread_t th[256];
	struct load_arg args[256];
	int t = o->threads;
	double t0 = now_s(), dt;

	for (int i = 0; i < t; i++) {
		args[i] = (struct load_arg){ v, o->consumers * i / t,
		    o->consumers * (i + 1) / t };
		pthread_create(&th[i], NULL, load_main, &args[i]);
	}
	for (int i = 0; i < t; i++)
		pthread_join(th[i], NULL);
	dt = now_s() - t0;
	printf("load %ld %.3f %.0f\n", o->consumers, dt, (double)o->consumers / dt);
	vault_close(v);
	config_free(cfg);
	return 0;
}

/* ------------------------------------------------------------------ scan */

static int
cmd_scan(const struct opts *o)
{
	struct config *cfg = NULL;
	struct vault *v = open_dev(o->dev_dir, &cfg);
	struct fetch_query q = { 0 };
	struct fetch_page pg;
	int attrs[SCHEMA_MAX_ATTRS];
	long total = 0;
	double t0, dt;

	q.purpose = schema_find_purpose(v->schema, o->purpose, strlen(o->purpose));
	if (q.purpose < 0)
		die("unknown purpose");
	for (size_t a = 0; a < v->schema->n_attrs; a++)
		if (schema_purpose_allows(v->schema, q.purpose, (int)a))
			attrs[q.n_attrs++] = (int)a;
	q.attrs = attrs;
	q.batch_size = (uint32_t)o->batch;
	q.today_days = fetch_today();
	if (fetch_page_init(&pg, q.batch_size, q.n_attrs) != 0)
		die("out of memory");
	t0 = now_s();
	do {
		if (fetch_read_page(v, &q, &pg) != 0)
			die("page read failed");
		total += (long)pg.n;
		q.has_after = pg.has_last;
		memcpy(q.after, pg.last, CRYPTO_REF_BYTES);
	} while (!pg.done);
	dt = now_s() - t0;
	printf("scan %ld %.3f %.0f\n", total, dt, (double)total / dt);
	fetch_page_free(&pg);
	vault_close(v);
	config_free(cfg);
	return 0;
}

/* ----------------------------------------------------------------- fetch */

struct fetch_arg {
	const struct opts *o;
	char *token;
	int n;
	long rows;
	int code;
};

static int
count_rows(const ProtobufCMessage *m, void *arg)
{
	((struct fetch_arg *)arg)->rows += (long)((const Vault__V1__FeatureBatch *)m)->n_rows;
	return 0;
}

static void *
fetch_main(void *p)
{
	struct fetch_arg *a = p;
	Vault__V1__FetchFeaturesRequest req = VAULT__V1__FETCH_FEATURES_REQUEST__INIT;
	char dataset[64];
	struct vc_status st;
	struct vc *vc;

	/* A new dataset each run, so every run records its lineage. */
	snprintf(dataset, sizeof(dataset), "bench-%ld-%ld-%d", (long)getpid(),
	    (long)(now_s() * 1e6), a->n);
	req.purpose = (char *)a->o->purpose;
	req.dataset_id = dataset;
	req.batch_size = (uint32_t)a->o->batch;
	if (vc_open(&vc, a->o->addr, a->token) != 0)
		die("cannot open a channel");
	a->code = vc_stream(vc, "/vault.v1.Features/FetchFeatures", &req.base,
	    &vault__v1__feature_batch__descriptor, count_rows, a, &st, 0);
	if (a->code != 0)
		fprintf(stderr, "vaultbench: fetch: %s: %s\n", vc_code_name(st.code),
		    st.message);
	vc_close(vc);
	return NULL;
}

static int
cmd_fetch(const struct opts *o)
{
	struct fetch_arg args[16];
	pthread_t th[16];
	char token[256];
	FILE *f = fopen(o->token_file, "r");
	long total = 0;
	double t0, dt;

	if (f == NULL || fgets(token, sizeof(token), f) == NULL)
		die("cannot read the token file");
	fclose(f);
	token[strcspn(token, "\r\n")] = '\0';
	vc_global_init();
	t0 = now_s();
	for (int i = 0; i < o->streams; i++) {
		args[i] = (struct fetch_arg){ o, token, i, 0, 0 };
		pthread_create(&th[i], NULL, fetch_main, &args[i]);
	}
	for (int i = 0; i < o->streams; i++) {
		pthread_join(th[i], NULL);
		if (args[i].code != 0)
			die("a stream failed");
		total += args[i].rows;
	}
	dt = now_s() - t0;
	printf("fetch%d %ld %.3f %.0f\n", o->streams, total, dt, (double)total / dt);
	vc_global_shutdown();
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dev-dir", required_argument, NULL, 'd' },
		{ "consumers", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "purpose", required_argument, NULL, 'p' },
		{ "batch", required_argument, NULL, 'b' },
		{ "addr", required_argument, NULL, 'a' },
		{ "token-file", required_argument, NULL, 'k' },
		{ "streams", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .purpose = "training", .consumers = 100000, .threads = 64,
	    .batch = 2000, .streams = 1 };
	int ch;

	if (argc < 2)
		die("usage: vaultbench load|scan|fetch [options]");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd': o.dev_dir = optarg; break;
		case 'n': o.consumers = atol(optarg); break;
		case 't': o.threads = atoi(optarg); break;
		case 'p': o.purpose = optarg; break;
		case 'b': o.batch = atoi(optarg); break;
		case 'a': o.addr = optarg; break;
		case 'k': o.token_file = optarg; break;
		case 's': o.streams = atoi(optarg); break;
		default: die("bad option");
		}
	}
	if (o.threads < 1 || o.threads > 256 || o.streams < 1 || o.streams > 16 ||
	    o.batch < 1 || o.batch > 10000)
		die("an option is out of range");
	log_set_level(LOG_LEVEL_WARN);
	if (strcmp(argv[1], "load") == 0 && o.dev_dir)
		return cmd_load(&o);
	if (strcmp(argv[1], "scan") == 0 && o.dev_dir)
		return cmd_scan(&o);
	if (strcmp(argv[1], "fetch") == 0 && o.addr && o.token_file)
		return cmd_fetch(&o);
	die("usage: vaultbench load|scan|fetch [options]");
	return 1;
}
