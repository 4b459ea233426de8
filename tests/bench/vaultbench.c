/*
 * vaultbench: the measuring tool behind scripts/bench.
 *
 *   vaultbench load  --dev-dir DIR --consumers N [--threads T]
 *       creates a development vault in DIR (as vaultd --dev would) and loads
 *       N synthetic consumers with 10 attributes each through the engine
 *       (the same consumers as api-put: ids user-<i>@example.test)
 *   vaultbench scan  --dev-dir DIR [--purpose P] [--batch B]
 *       in-process limit: scan, DEK unwrap, decrypt and tokenize every
 *       consumer, page by page, without gRPC; prints consumers/s
 *   vaultbench fetch --addr A --token-file F [--purpose P] [--batch B] [--streams S]
 *       FetchFeatures over gRPC with S concurrent streams; prints consumers/s
 *   vaultbench delete --addr A --token-file F --consumers N [--batch B] [--from K]
 *       deletes bench consumers K..K+N-1 with DeleteConsumers in batches of B
 *       (B = 1: one DeleteConsumer call each); prints deletions/s
 *   vaultbench rewrap --consumers N
 *       the crypto alone of a rotation: N DEK unwraps and wraps in-process
 *   vaultbench rotate --addr A --token-file F --consumers N
 *       reads for 2 s (baseline), then RotateMasterKey while 2 readers read;
 *       prints DEKs/s and read latency p50 and worst, without and during
 *   vaultbench layout --dev-dir DIR --consumers N
 *       a record per attribute (vaultd's layout) against one sealed record
 *       per consumer, on the store layer alone (bench_layout.c)
 *   vaultbench drop-list|drop-pg ...
 *       a DROP list to process, and the fair baseline's processing of it
 *       (bench_drop.c)
 *
 * Each prints one line: "<what> <consumers> <seconds> <consumers/s>";
 * layout prints one per figure (bench_layout.c).
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/consumer.h"
#include "devmode.h"
#include "engine/fetch.h"
#include "util/log.h"
#include "vault/v1/vault.pb-c.h"
#include "bench.h"
#include "vault_client.h"

struct opts {
	const char *dev_dir, *addr, *token_file, *purpose;
	long consumers, from;
	int threads, batch, streams;
};

static struct vault *
open_dev(const char *dir, struct config **cfg)
{
	char path[4096], err[512];
	struct vault *v = NULL;

	if (crypto_init() != 0 || devmode_prepare(dir, path, sizeof(path)) != 0)
		bench_die("cannot prepare the vault directory");
	if (config_load(cfg, path, err, sizeof(err)) != 0)
		bench_die(err);
	if (vault_open(&v, *cfg, VAULT_OPEN_CREATE) != 0)
		bench_die("cannot open the vault");
	return v;
}

/* ------------------------------------------------------------------ load */

struct load_arg {
	struct vault *v;
	long from, to;
};

static void *
load_main(void *p)
{
	struct load_arg *a = p;
	const struct schema *s = a->v->schema;
	char id[64], vals[10][40];

	for (long i = a->from; i < a->to; i++) {
		struct attr_in in[10];
		uint8_t ref[CRYPTO_REF_BYTES];
		bool created;

		bench_consumer_id(i, id, sizeof(id));
		bench_attributes(i, vals);
		for (int j = 0; j < 10; j++)
			in[j] = (struct attr_in){ schema_find_attr(s, bench_attr_names[j],
			    strlen(bench_attr_names[j])), vals[j], strlen(vals[j]) };
		/* As the API layer does: the engine takes the consumer's ref. */
		crypto_consumer_ref(keyring_index_key(a->v->kr), id, strlen(id),
		    ref);
		if (consumer_put(a->v, ref, in, 10, &created) != 0)
			bench_die("put failed");
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
	double t0 = bench_now(), dt;

	for (int i = 0; i < t; i++) {
		args[i] = (struct load_arg){ v, o->consumers * i / t,
		    o->consumers * (i + 1) / t };
		pthread_create(&th[i], NULL, load_main, &args[i]);
	}
	for (int i = 0; i < t; i++)
		pthread_join(th[i], NULL);
	dt = bench_now() - t0;
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
	struct fetch_set set = { 0 };
	int attrs[SCHEMA_MAX_ATTRS];
	long total = 0;
	double t0, dt;

	q.purpose = schema_find_purpose(v->schema, o->purpose, strlen(o->purpose));
	if (q.purpose < 0)
		bench_die("unknown purpose");
	for (size_t a = 0; a < v->schema->n_attrs; a++)
		if (schema_purpose_allows(v->schema, q.purpose, (int)a))
			attrs[q.n_attrs++] = (int)a;
	q.attrs = attrs;
	q.today_days = fetch_today();
	t0 = bench_now();
	/* What a stream does in process: the snapshot, then each page's re-check. */
	if (fetch_snapshot(v, &q, &set) != 0)
		bench_die("snapshot failed");
	for (size_t from = 0; from < set.n; from += (size_t)o->batch) {
		size_t n = set.n - from < (size_t)o->batch ? set.n - from :
		    (size_t)o->batch;

		if (fetch_recheck(v, &q, &set, from, n) != 0)
			bench_die("page re-check failed");
		total += (long)n;
	}
	dt = bench_now() - t0;
	printf("scan %ld %.3f %.0f\n", total, dt, (double)total / dt);
	fetch_set_free(&set);
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
	    (long)(bench_now() * 1e6), a->n);
	req.purpose = (char *)a->o->purpose;
	req.dataset_id = dataset;
	req.batch_size = (uint32_t)a->o->batch;
	if (vc_open(&vc, a->o->addr, a->token) != 0)
		bench_die("cannot open a channel");
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
		bench_die("cannot read the token file");
	fclose(f);
	token[strcspn(token, "\r\n")] = '\0';
	vc_global_init();
	t0 = bench_now();
	for (int i = 0; i < o->streams; i++) {
		args[i] = (struct fetch_arg){ o, token, i, 0, 0 };
		pthread_create(&th[i], NULL, fetch_main, &args[i]);
	}
	for (int i = 0; i < o->streams; i++) {
		pthread_join(th[i], NULL);
		if (args[i].code != 0)
			bench_die("a stream failed");
		total += args[i].rows;
	}
	dt = bench_now() - t0;
	printf("fetch%d %ld %.3f %.0f\n", o->streams, total, dt, (double)total / dt);
	vc_global_shutdown();
	return 0;
}

static struct vc *
open_client(const struct opts *o, char *token, size_t len)
{
	FILE *f = fopen(o->token_file, "r");
	struct vc *vc;

	if (f == NULL || fgets(token, (int)len, f) == NULL)
		bench_die("cannot read the token file");
	fclose(f);
	token[strcspn(token, "\r\n")] = '\0';
	if (vc_open(&vc, o->addr, token) != 0)
		bench_die("cannot open a channel");
	return vc;
}

static int
cmd_delete(const struct opts *o)
{
	char token[256], ids[1000][48];
	Vault__V1__DeleteConsumerRequest items[1000], *ptrs[1000];
	struct vc *vc;
	struct vc_status st;
	long done = 0;
	double t0, dt;

	if (o->batch > 1000)
		bench_die("--batch is at most 1000 for delete");
	vc_global_init();
	vc = open_client(o, token, sizeof(token));
	t0 = bench_now();
	while (done < o->consumers) {
		long n = o->consumers - done < o->batch ? o->consumers - done : o->batch;
		ProtobufCMessage *resp = NULL;

		for (long i = 0; i < n; i++) {
			bench_consumer_id(o->from + done + i, ids[i], sizeof(ids[i]));
			vault__v1__delete_consumer_request__init(&items[i]);
			items[i].consumer_id = ids[i];
			ptrs[i] = &items[i];
		}
		if (o->batch == 1) {
			if (vc_unary(vc, "/vault.v1.Deletion/DeleteConsumer", &items[0].base,
			    &vault__v1__deletion_receipt__descriptor, &resp, &st, 60000) != 0)
				bench_die(st.message);
		} else {
			Vault__V1__DeleteConsumersRequest req =
			    VAULT__V1__DELETE_CONSUMERS_REQUEST__INIT;

			req.n_requests = (size_t)n;
			req.requests = ptrs;
			if (vc_unary(vc, "/vault.v1.Deletion/DeleteConsumers", &req.base,
			    &vault__v1__delete_consumers_response__descriptor, &resp,
			    &st, 60000) != 0)
				bench_die(st.message);
		}
		protobuf_c_message_free_unpacked(resp, NULL);
		done += n;
	}
	dt = bench_now() - t0;
	printf("delete%d %ld %.3f %.0f\n", o->batch, done, dt, (double)done / dt);
	vc_close(vc);
	vc_global_shutdown();
	return 0;
}

struct reader {
	const struct opts *o;
	char *token;
	volatile bool *stop;
	double lat[200000];
	size_t n;
	unsigned seed;
};

static void *
reader_main(void *p)
{
	struct reader *rd = p;
	struct vc *vc;
	char id[48];

	if (vc_open(&vc, rd->o->addr, rd->token) != 0)
		bench_die("cannot open a channel");
	while (!*rd->stop && rd->n < sizeof(rd->lat) / sizeof(rd->lat[0])) {
		Vault__V1__GetAttributesRequest req = VAULT__V1__GET_ATTRIBUTES_REQUEST__INIT;
		ProtobufCMessage *resp = NULL;
		struct vc_status st;
		double t0;

		bench_consumer_id((long)(rand_r(&rd->seed) % (unsigned)rd->o->consumers),
		    id, sizeof(id));
		req.consumer_id = id;
		req.purpose = "service";
		t0 = bench_now();
		if (vc_unary(vc, "/vault.v1.Consumers/GetAttributes", &req.base,
		    &vault__v1__get_attributes_response__descriptor, &resp, &st,
		    60000) != 0 && st.code != 5)
			bench_die(st.message);
		rd->lat[rd->n++] = bench_now() - t0;
		if (resp != NULL)
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	vc_close(vc);
	return NULL;
}

/* Runs 2 readers while fn runs (or for secs when fn is NULL): p50 and max in ms. */
static void
with_readers(const struct opts *o, char *token, void (*fn)(const struct opts *, char *, void *),
    void *arg, double secs, double *p50, double *worst)
{
	static struct reader rd[2];
	volatile bool stop = false;
	pthread_t th[2];
	double *all;
	size_t n = 0;

	for (int i = 0; i < 2; i++) {
		rd[i].o = o;
		rd[i].token = token;
		rd[i].stop = &stop;
		rd[i].n = 0;
		rd[i].seed = (unsigned)(i + 1);
		pthread_create(&th[i], NULL, reader_main, &rd[i]);
	}
	if (fn != NULL)
		fn(o, token, arg);
	else
		usleep((useconds_t)(secs * 1e6));
	stop = true;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	all = malloc((rd[0].n + rd[1].n + 1) * sizeof(double));
	for (int i = 0; i < 2; i++)
		for (size_t j = 0; j < rd[i].n; j++)
			all[n++] = rd[i].lat[j];
	qsort(all, n, sizeof(double), bench_cmp_double);
	*p50 = n ? all[n / 2] * 1000 : 0;
	*worst = n ? all[n - 1] * 1000 : 0;
	free(all);
}

struct rotate_result {
	uint64_t rewrapped;
	double secs;
};

static int
count_progress(const ProtobufCMessage *m, void *arg)
{
	((struct rotate_result *)arg)->rewrapped =
	    ((const Vault__V1__RotationProgress *)m)->rewrapped;
	return 0;
}

static void
run_rotation(const struct opts *o, char *token, void *arg)
{
	Vault__V1__RotateMasterKeyRequest req = VAULT__V1__ROTATE_MASTER_KEY_REQUEST__INIT;
	struct rotate_result *res = arg;
	struct vc_status st;
	struct vc *vc;
	double t0;

	if (vc_open(&vc, o->addr, token) != 0)
		bench_die("cannot open a channel");
	t0 = bench_now();
	if (vc_stream(vc, "/vault.v1.Keys/RotateMasterKey", &req.base,
	    &vault__v1__rotation_progress__descriptor, count_progress, res, &st, 0) != 0)
		bench_die(st.message);
	res->secs = bench_now() - t0;
	vc_close(vc);
}

static int
cmd_rewrap(const struct opts *o)
{
	uint8_t k1[CRYPTO_KEY_BYTES], k2[CRYPTO_KEY_BYTES], dek[CRYPTO_KEY_BYTES];
	uint8_t blob[CRYPTO_KEY_BYTES + CRYPTO_OVERHEAD], ad[CRYPTO_REF_BYTES + 7];
	double t0, dt;
	size_t n;

	if (crypto_init() != 0)
		bench_die("libsodium");
	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	memset(ad, 3, sizeof(ad));
	memset(dek, 4, sizeof(dek));
	if (crypto_seal(k1, 1, ad, sizeof(ad), dek, sizeof(dek), blob, sizeof(blob)) != 0)
		bench_die("seal");
	t0 = bench_now();
	for (long i = 0; i < o->consumers; i++) {
		if (crypto_open(k1, ad, sizeof(ad), blob, sizeof(blob), dek, sizeof(dek), &n) != 0 ||
		    crypto_seal(k2, 2, ad, sizeof(ad), dek, sizeof(dek), blob, sizeof(blob)) != 0 ||
		    crypto_open(k2, ad, sizeof(ad), blob, sizeof(blob), dek, sizeof(dek), &n) != 0 ||
		    crypto_seal(k1, 1, ad, sizeof(ad), dek, sizeof(dek), blob, sizeof(blob)) != 0)
			bench_die("crypto");
	}
	dt = bench_now() - t0;
	printf("rewrap %ld %.3f %.0f\n", o->consumers * 2, dt,
	    (double)o->consumers * 2 / dt);
	return 0;
}

static int
cmd_rotate(const struct opts *o)
{
	struct rotate_result res = { 0, 0 };
	double base_p50, base_max, p50, worst;
	char token[256];
	struct vc *vc;

	vc_global_init();
	vc = open_client(o, token, sizeof(token));
	vc_close(vc);
	with_readers(o, token, NULL, NULL, 2.0, &base_p50, &base_max);
	with_readers(o, token, run_rotation, &res, 0, &p50, &worst);
	printf("rotate %llu %.3f %.0f read_p50_ms %.2f read_max_ms %.2f "
	    "during_p50_ms %.2f during_max_ms %.2f\n",
	    (unsigned long long)res.rewrapped, res.secs,
	    (double)res.rewrapped / res.secs, base_p50, base_max, p50, worst);
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
		{ "from", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .purpose = "training", .consumers = 100000, .threads = 64,
	    .batch = 2000, .streams = 1 };
	int ch;

	if (argc < 2)
		bench_die("usage: vaultbench load|scan|fetch|delete|rewrap|rotate|layout|api-*|pg-*|drop-* "
		    "[options]");
	if (strncmp(argv[1], "drop-", 5) == 0)
		return bench_drop_main(argv[1], argc, argv);
	if (strncmp(argv[1], "api-", 4) == 0 || strncmp(argv[1], "pg-", 3) == 0)
		return bench_clients_main(argv[1], argc, argv);
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
		case 'F': o.from = atol(optarg); break;
		default: bench_die("bad option");
		}
	}
	if (o.threads < 1 || o.threads > 256 || o.streams < 1 || o.streams > 16 ||
	    o.batch < 1 || o.batch > 10000 || o.consumers < 1)
		bench_die("an option is out of range");
	log_set_level(LOG_LEVEL_WARN);
	if (strcmp(argv[1], "load") == 0 && o.dev_dir)
		return cmd_load(&o);
	if (strcmp(argv[1], "scan") == 0 && o.dev_dir)
		return cmd_scan(&o);
	if (strcmp(argv[1], "fetch") == 0 && o.addr && o.token_file)
		return cmd_fetch(&o);
	if (strcmp(argv[1], "delete") == 0 && o.addr && o.token_file)
		return cmd_delete(&o);
	if (strcmp(argv[1], "rewrap") == 0)
		return cmd_rewrap(&o);
	if (strcmp(argv[1], "rotate") == 0 && o.addr && o.token_file)
		return cmd_rotate(&o);
	if (strcmp(argv[1], "layout") == 0 && o.dev_dir)
		return bench_layout_main(o.dev_dir, o.consumers);
	bench_die("usage: vaultbench load|scan|fetch [options]");
	return 1;
}
