/*
 * Group commit, request isolation, and the encrypted engine over it: on
 * LMDB, and on PostgreSQL when VAULT_TEST_PG_CONNINFO names a server
 * (testpg.h; each test in a fresh database), where two replicas' writers
 * must serialize too.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sodium.h>

#include "engine/consumer.h"
#include "engine/deletion.h"
#include "engine/drop.h"
#include "engine/dropindex.h"
#include "engine/requests.h"
#include "engine/retention.h"
#include "engine/rotation.h"
#include "testpg.h"
#include "testutil.h"

struct kv_job {
	struct store *st;
	const char *key;
	int fail;
	pthread_t ran_on;		/* the thread that applied the request */
	struct writer *wr;
};

static int
put_kv(struct store_txn *txn, void *arg)
{
	struct kv_job *j = arg;
	struct store_val k = { strlen(j->key), (void *)j->key }, v = { 1, "x" };
	int rc = store_put(txn, STORE_META, k.data, k.len, v.data, v.len, 0);

	j->ran_on = pthread_self();
	if (rc != 0)
		return VAULT_ERR_STORE;
	return j->fail ? VAULT_ERR_INVALID : 0;
}

static bool
meta_has(struct store *st, const char *key)
{
	struct store_txn *txn;
	struct store_val k = { strlen(key), (void *)key }, v;
	int rc;

	assert_int_equal(store_read_begin(st, &txn), 0);
	rc = store_get(txn, STORE_META, k.data, k.len, &v);
	store_read_end(txn);
	return rc == 0;
}

struct thread_arg {
	struct test_vault *f;
	int id;
	char prefix;
	int n, fail_at;		/* request i fails when i % 10 == fail_at */
	bool mixed;		/* odd requests lazy */
};

static void *
submit_some(void *p)
{
	struct thread_arg *a = p;
	char key[64];

	for (int i = 0; i < a->n; i++) {
		struct kv_job j = { .st = a->f->v->store, .key = key,
		    .fail = i % 10 == a->fail_at };
		int r;

		snprintf(key, sizeof(key), "%c%d-%d", a->prefix, a->id, i);
		r = a->mixed && i % 2 ? writer_submit_lazy(a->f->v->wr, put_kv, &j) :
		    writer_submit(a->f->v->wr, put_kv, &j);
		assert_int_equal(r, j.fail ? VAULT_ERR_INVALID : 0);
	}
	return NULL;
}

/*
 * Eight threads submit n requests each at once; then exactly the requests
 * that did not fail are in the store.
 */
static void
submit_from_threads(struct test_vault *f, char prefix, int n, int fail_at, bool mixed)
{
	pthread_t th[8];
	struct thread_arg args[8];
	char key[64];

	for (int i = 0; i < 8; i++) {
		args[i] = (struct thread_arg){ f, i, prefix, n, fail_at, mixed };
		pthread_create(&th[i], NULL, submit_some, &args[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (int t = 0; t < 8; t++)
		for (int i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "%c%d-%d", prefix, t, i);
			assert_int_equal(meta_has(f->v->store, key),
			    i % 10 != fail_at);
		}
}

/* A failing request leaves nothing; its neighbours in the group commit. */
static void
test_group_commit_isolates_requests(void **state)
{
	struct test_vault *f = *state;
	unsigned long long groups, reqs, groups0, reqs0;

	/* Opening the vault applied a request of its own (the audit index's). */
	writer_stats(f->v->wr, &groups0, &reqs0);
	submit_from_threads(f, 't', 50, 9, false);
	/* Alone in its group, a failing request leaves nothing either. */
	{
		struct kv_job solo = { .st = f->v->store, .key = "solo", .fail = 1 };

		assert_int_equal(writer_submit(f->v->wr, put_kv, &solo),
		    VAULT_ERR_INVALID);
		assert_false(meta_has(f->v->store, "solo"));
		solo.fail = 0;
		assert_int_equal(writer_submit_lazy(f->v->wr, put_kv, &solo), 0);
		assert_true(meta_has(f->v->store, "solo"));
	}
	writer_stats(f->v->wr, &groups, &reqs);
	assert_int_equal(reqs - reqs0, 402);
	assert_true(groups - groups0 >= 1 && groups - groups0 <= reqs - reqs0);
}

/*
 * Half of each thread's requests lazy, one in ten failing. Lazy requests
 * are applied by their submitters while the writer is idle, and by the
 * writer thread behind durable ones: either way each request's result is
 * its own, a failing one leaves nothing, and none is lost.
 */
static void
test_lazy_and_durable_mixed(void **state)
{
	struct test_vault *f = *state;
	unsigned long long groups, reqs, groups0, reqs0;

	writer_stats(f->v->wr, &groups0, &reqs0);
	submit_from_threads(f, 'm', 200, 7, true);
	writer_stats(f->v->wr, &groups, &reqs);
	assert_int_equal(reqs - reqs0, 1600);
	assert_true(groups - groups0 >= 1 && groups - groups0 <= reqs - reqs0);
}

static atomic_bool blocker_started, blocker_release;

static int
block_until_released(struct store_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	atomic_store(&blocker_started, true);
	while (!atomic_load(&blocker_release))
		usleep(1000);
	return 0;
}

static void *
submit_blocker(void *p)
{
	struct test_vault *f = p;

	assert_int_equal(writer_submit(f->v->wr, block_until_released, NULL), 0);
	return NULL;
}

static void *
submit_one_lazy(void *p)
{
	struct kv_job *j = p;

	assert_int_equal(writer_submit_lazy(j->wr, put_kv, j),
	    j->fail ? VAULT_ERR_INVALID : 0);
	return NULL;
}

/*
 * Lazy requests queued behind a busy writer are applied as one group; the
 * failing one among them costs the others nothing (the group is applied
 * again, each request in its own nested transaction).
 */
static void
test_lazy_group_with_a_failure(void **state)
{
	struct test_vault *f = *state;
	pthread_t blocker, th[6];
	struct kv_job jobs[6];
	char keys[6][16];

	atomic_store(&blocker_started, false);
	atomic_store(&blocker_release, false);
	pthread_create(&blocker, NULL, submit_blocker, f);
	while (!atomic_load(&blocker_started))
		usleep(1000);
	for (int i = 0; i < 6; i++) {
		snprintf(keys[i], sizeof(keys[i]), "queued-%d", i);
		jobs[i] = (struct kv_job){ .st = f->v->store, .key = keys[i],
		    .fail = i == 3, .wr = f->v->wr };
		pthread_create(&th[i], NULL, submit_one_lazy, &jobs[i]);
	}
	usleep(50 * 1000);
	atomic_store(&blocker_release, true);
	pthread_join(blocker, NULL);
	for (int i = 0; i < 6; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 6; i++)
		assert_int_equal(meta_has(f->v->store, keys[i]), i != 3);
}

/* With the writer idle, a lazy request costs no hand-off to its thread. */
static void
test_lazy_runs_on_the_caller_when_idle(void **state)
{
	struct test_vault *f = *state;
	struct kv_job lazy = { .st = f->v->store, .key = "lazy", .fail = 0 };
	struct kv_job durable = { .st = f->v->store, .key = "durable", .fail = 0 };

	assert_int_equal(writer_submit_lazy(f->v->wr, put_kv, &lazy), 0);
	assert_true(pthread_equal(lazy.ran_on, pthread_self()));
	assert_int_equal(writer_submit(f->v->wr, put_kv, &durable), 0);
	assert_false(pthread_equal(durable.ran_on, pthread_self()));
	assert_true(meta_has(f->v->store, "lazy"));
	assert_true(meta_has(f->v->store, "durable"));
}

static void
put1(struct test_vault *f, const char *id, int attr, const char *value)
{
	struct attr_in in = { attr, value, strlen(value) };
	uint8_t ref[CRYPTO_REF_BYTES];
	bool created;

	assert_int_equal(consumer_put(f->v, test_ref(f->v, id, ref), &in, 1, &created), 0);
}

static void
test_put_get_delete(void **state)
{
	struct test_vault *f = *state;
	struct consumer_values cv;
	struct deletion_request req = { TEST_REF(f->v, "alice"), "req-1" };
	struct receipt rc;
	size_t bad;
	int want[] = { 0, 2 };

	put1(f, "alice", 0, "alice@example.com");
	put1(f, "alice", 2, "34");
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "alice"), 0, want, 2, &cv), 0);
	assert_int_equal(cv.n, 2);
	assert_string_equal(cv.v[0].value, "alice@example.com");
	assert_string_equal(cv.v[1].value, "34");
	consumer_values_clear(&cv);
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "alice"), 0, NULL, 0, &cv), 0);
	assert_int_equal(cv.n, 2);
	consumer_values_clear(&cv);
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "bob"), 0, NULL, 0, &cv),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	assert_true(rc.found);
	assert_false(rc.repeated);
	assert_int_equal(rc.epoch, 1);
	assert_true(crypto_sign_verify_detached(rc.signature, rc.signed_bytes,
	    rc.signed_len, keyring_receipt_public_key(f->v->kr)) == 0);
	receipt_clear(&rc);
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "alice"), 0, NULL, 0, &cv),
	    VAULT_ERR_NOT_FOUND);
	/* The same request id returns the same receipt; a new one finds nothing. */
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	assert_true(rc.found && rc.repeated);
	receipt_clear(&rc);
	req.request_id = "req-2";
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	assert_false(rc.found);
	receipt_clear(&rc);
	/* A request id of another consumer is refused. */
	req.ref = TEST_REF(f->v, "bob");
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), VAULT_ERR_EXISTS);
}

/* Copies consumer from's values record over consumer to's. */
static void
move_record(struct test_vault *f, const char *from, const char *to)
{
	uint8_t rf[CRYPTO_REF_BYTES], rt[CRYPTO_REF_BYTES], copy[4096];
	struct store_txn *txn;
	struct store_val v;

	test_ref(f->v, from, rf);
	test_ref(f->v, to, rt);
	assert_int_equal(store_write_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, STORE_ATTRS, rf, sizeof(rf), &v), 0);
	assert_true(v.len <= sizeof(copy));
	memcpy(copy, v.data, v.len);
	assert_int_equal(store_put(txn, STORE_ATTRS, rt, sizeof(rt), copy, v.len,
	    0), 0);
	assert_int_equal(store_write_commit(txn), 0);
}

/* XORs byte at of id's record in sp (its values record: STORE_ATTRS) with x. */
static void
flip_record(struct test_vault *f, enum store_space sp, const char *id,
    size_t at, uint8_t x)
{
	uint8_t ref[CRYPTO_REF_BYTES], copy[4096];
	struct store_txn *txn;
	struct store_val v;

	test_ref(f->v, id, ref);
	assert_int_equal(store_write_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, sp, ref, sizeof(ref), &v), 0);
	assert_true(v.len <= sizeof(copy) && at < v.len);
	memcpy(copy, v.data, v.len);
	copy[at] ^= x;
	assert_int_equal(store_put(txn, sp, ref, sizeof(ref), copy, v.len, 0),
	    0);
	assert_int_equal(store_write_commit(txn), 0);
}

static void
test_moved_value_fails_to_open(void **state)
{
	struct test_vault *f = *state;
	struct consumer_values cv;
	int email = 0, zip = 1;

	put1(f, "alice", 0, "alice@example.com");
	put1(f, "alice", 1, "94103");
	put1(f, "bob", 0, "bob@example.com");
	put1(f, "carol", 0, "carol@example.com");
	/* To another consumer: bob's DEK and ref differ. */
	move_record(f, "alice", "bob");
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "bob"), 0, &email, 1, &cv),
	    VAULT_ERR_CRYPTO);
	/*
	 * The names and times are in the AEAD's associated data: carol's
	 * first name byte ("email" -> "dmail", still in order) or a byte of
	 * its updated time changed, and nothing opens.
	 */
	flip_record(f, STORE_ATTRS, "carol", 4, 0x01);
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "carol"), 0, NULL, 0,
	    &cv), VAULT_ERR_CRYPTO);
	flip_record(f, STORE_ATTRS, "carol", 4, 0x01);
	flip_record(f, STORE_ATTRS, "carol", 3 + 1 + 5 + 7, 0x01);
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "carol"), 0, &email, 1,
	    &cv), VAULT_ERR_CRYPTO);
	flip_record(f, STORE_ATTRS, "carol", 3 + 1 + 5 + 7, 0x01);
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "carol"), 0, &email, 1,
	    &cv), 0);
	consumer_values_clear(&cv);
	/* The untouched values still open. */
	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "alice"), 0, &zip, 1, &cv), 0);
	assert_string_equal(cv.v[0].value, "94103");
	consumer_values_clear(&cv);
}

static void assert_values(struct test_vault *f, const char *id,
    const char *email, const char *zip, const char *age);

/*
 * The consumer record's header is bound into the wrapped DEK: its format
 * set back (to read the consumer through an older layout, its values
 * record unread), its generation or its created time changed, the DEK
 * does not open, and every read and write of the consumer is refused.
 */
static void
test_changed_header_fails_to_unwrap(void **state)
{
	static const struct { size_t at; uint8_t x; } flips[] = {
		{ 0, 0x04 ^ 0x03 },	/* format 4 -> 3 */
		{ 0, 0x04 ^ 0x01 },	/* format 4 -> 1 */
		{ 0, 0x04 ^ 0x02 },	/* format 4 -> 2 */
		{ RECORD_CONSUMER_GEN + 3, 0x01 },
		{ RECORD_CONSUMER_CREATED + 7, 0x01 },
	};
	struct test_vault *f = *state;
	struct consumer_values cv;
	struct attr_in in = { 1, "94103", 5 };
	bool created;

	put1(f, "alice", 0, "alice@example.com");
	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		flip_record(f, STORE_CONSUMERS, "alice", flips[i].at, flips[i].x);
		assert_int_equal(consumer_get(f->v, TEST_REF(f->v, "alice"), 0,
		    NULL, 0, &cv), VAULT_ERR_CRYPTO);
		assert_int_equal(consumer_put(f->v, TEST_REF(f->v, "alice"), &in,
		    1, &created), VAULT_ERR_CRYPTO);
		flip_record(f, STORE_CONSUMERS, "alice", flips[i].at, flips[i].x);
	}
	/* Set back, it reads again, and the refused puts wrote nothing. */
	assert_values(f, "alice", "alice@example.com", NULL, NULL);
}

struct log_job {
	struct vault *v;
	const char *kind;
	uint8_t ref[CRYPTO_REF_BYTES];
};

static int
log_apply(struct store_txn *txn, void *arg)
{
	struct log_job *j = arg;

	return requests_log_txn(txn, j->kind, j->ref);
}

static size_t
request_records(struct store *st)
{
	struct store_txn *txn;
	size_t n;

	assert_int_equal(store_read_begin(st, &txn), 0);
	assert_int_equal(store_count(txn, STORE_REQUESTS, &n), 0);
	store_read_end(txn);
	return n;
}

/*
 * Request records are keyed by kind and ref, not by time: a sweep that
 * looks at two records per transaction must still reach old records that
 * sort after recent ones.
 */
static void
test_request_sweep_reaches_every_record(void **state)
{
	struct test_vault *f = *state;
	struct log_job j = { .v = f->v };
	size_t expired, txns;
	uint64_t before;

	j.kind = "zz-old";
	for (int i = 0; i < 5; i++) {
		j.ref[0] = (uint8_t)i;
		assert_int_equal(writer_submit(f->v->wr, log_apply, &j), 0);
	}
	usleep(5000);
	before = store_now_ms();
	usleep(5000);
	j.kind = "aa-new";
	for (int i = 0; i < 5; i++) {
		j.ref[0] = (uint8_t)i;
		assert_int_equal(writer_submit(f->v->wr, log_apply, &j), 0);
	}
	assert_int_equal(request_records(f->v->store), 10);
	assert_int_equal(requests_expire(f->v, before, 2, &expired, &txns), 0);
	assert_int_equal(expired, 5);
	assert_int_equal(request_records(f->v->store), 5);
	assert_true(txns >= 5);		/* two records looked at per transaction */
}


struct fill_job {
	struct store *st;
	int n;
	bool erase;
};

/* Puts (or erases) 64 KiB value number n in meta, an ordinary write. */
static int
fill_apply(struct store_txn *txn, void *arg)
{
	static char big[64 << 10];
	struct fill_job *j = arg;
	char key[32];
	struct store_val k = { 0, key }, v = { sizeof(big), big };
	int r;

	k.len = (size_t)snprintf(key, sizeof(key), "fill-%d", j->n);
	if (j->erase)
		return store_del(txn, STORE_META, k.data, k.len, NULL,
		    0) == 0 ? 0 :
		    VAULT_ERR_STORE;
	if ((r = store_room(j->st)) != 0)
		return r;
	return store_put(txn, STORE_META, k.data, k.len, v.data, v.len,
	    0) == 0 ? 0 : VAULT_ERR_STORE;
}

/*
 * Ordinary writes stop at the high-water mark, with room left in the map;
 * freed pages count as room again; the disk reserve is allocated past the
 * data file's end.
 */
static void
test_store_headroom(void **state)
{
	struct test_vault *f = *state;
	struct store *st = f->v->store;
	struct fill_job j = { st, 0, false };
	struct stat sb;
	char path[4096];
	int r, n;

	store_set_headroom(st, 50, 0);
	assert_int_equal(store_refusing(st), 0);
	while ((r = writer_submit_lazy(f->v->wr, fill_apply, &j)) == 0)
		j.n++;
	assert_int_equal(r, VAULT_ERR_LIMIT);
	assert_int_equal(store_refusing(st), VAULT_ERR_LIMIT);
	/* 64 MB map, the mark at 32 MB: about 480 values of 17 pages each. */
	assert_true(j.n > 400 && j.n < 520);
	/* The headroom still takes writes that are not ordinary. */
	j.erase = true;
	for (n = j.n, j.n = 0; j.n < n; j.n++)
		assert_int_equal(writer_submit_lazy(f->v->wr, fill_apply, &j), 0);
	assert_int_equal(store_room(st), 0);

	/* The reserve is taken at the first check of room, not when set. */
	store_set_headroom(st, 90, 8 << 20);
	assert_int_equal(store_room(st), 0);
	assert_int_equal(store_refusing(st), 0);
	snprintf(path, sizeof(path), "%s/data.mdb", f->cfg->store_dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_true((long long)sb.st_blocks * 512 - sb.st_size >= 8 << 20);
}

struct counter_arg {
	struct writer *wr;
	int groups;
};

/* Reads the counter and writes it plus one, in the writer's group. */
static int
increment_apply(struct store_txn *txn, void *arg)
{
	struct store_val v;
	uint64_t n = 0;
	uint8_t b[8];
	int r;

	(void)arg;
	if ((r = store_get(txn, STORE_META, "counter", 7, &v)) == 0)
		n = store_get_u64(v.data);
	else if (r != VAULT_ERR_NOT_FOUND)
		return r;
	store_put_u64(b, n + 1);
	return store_put(txn, STORE_META, "counter", 7, b, 8, 0);
}

static void *
submit_increments(void *p)
{
	struct counter_arg *a = p;

	for (int i = 0; i < a->groups; i++)
		assert_int_equal(writer_submit(a->wr, increment_apply, NULL), 0);
	return NULL;
}

/*
 * Two replicas (store handles, each with its writer) on one database,
 * 200 increments each from its own thread: their groups serialize on the
 * database, none is lost.
 */
static void
test_pg_two_writers(void **state)
{
	struct testpg_db db;
	struct store_params p;
	struct store *st[2];
	struct counter_arg a[2];
	pthread_t th[2];
	struct store_txn *txn;
	struct store_val v;

	(void)state;
	testpg_create(&db);
	p = testpg_params(&db);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_open_pg(&st[i], &p), 0);
		assert_int_equal(writer_start(&a[i].wr, st[i], 64), 0);
		a[i].groups = 200;
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, submit_increments, &a[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(store_read_begin(st[1], &txn), 0);
	assert_int_equal(store_get(txn, STORE_META, "counter", 7, &v), 0);
	assert_int_equal(store_get_u64(v.data), 400);
	store_read_end(txn);
	for (int i = 0; i < 2; i++) {
		writer_stop(a[i].wr);
		store_close(st[i]);
	}
	testpg_drop(&db);
}

/* The needles scan_file looks for, and how many files held one. */
static const char *scan_needles[3];
static int scan_hits[3];

static int
scan_file(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	FILE *fp;
	char *buf;

	(void)ftw;
	if (type != FTW_F || sb->st_size == 0 || (fp = fopen(path, "rb")) == NULL)
		return 0;
	buf = malloc((size_t)sb->st_size);
	assert_non_null(buf);
	if (fread(buf, 1, (size_t)sb->st_size, fp) == (size_t)sb->st_size)
		for (int i = 0; i < 3; i++)
			if (memmem(buf, (size_t)sb->st_size, scan_needles[i],
			    strlen(scan_needles[i])) != NULL) {
				scan_hits[i]++;
				if (i < 2)
					fprintf(stderr, "%s holds a canary\n", path);
			}
	free(buf);
	fclose(fp);
	return 0;
}

static int
put_control(struct store_txn *txn, void *arg)
{
	return store_put(txn, STORE_META, "control", 7, arg, strlen(arg), 0);
}

/*
 * PostgreSQL sees only ciphertext: after a consumer's put, neither its id
 * nor its value is in any file of the server's data directory (tables,
 * WAL, logs), while a control written to the store unsealed is found
 * there (the scan reaches the data).
 */
static void
test_pg_no_plaintext_on_server(void **state)
{
	struct testpg_vault *f = *state;
	char dir[4096];

	scan_needles[0] = "canary-id-5e1f0c77";
	scan_needles[1] = "canary-value-93b2a1@example.com";
	scan_needles[2] = "control-unsealed-7c1d";
	memset(scan_hits, 0, sizeof(scan_hits));
	put1(&f->tv, scan_needles[0], 0, scan_needles[1]);
	assert_int_equal(writer_submit(f->tv.v->wr, put_control,
	    (void *)scan_needles[2]), 0);
	testpg_exec(f->db.conninfo, "CHECKPOINT");
	testpg_data_dir(dir, sizeof(dir));
	assert_int_equal(nftw(dir, scan_file, 16, FTW_PHYS), 0);
	assert_int_equal(scan_hits[0], 0);
	assert_int_equal(scan_hits[1], 0);
	assert_true(scan_hits[2] > 0);
}


/*
 * Rewrites id's consumer as one of an older format: for formats 1 and 2, a
 * record per attribute (keyed ref | name, sealed on its own) and, for
 * format 2, a manifest; for format 3, the values record as it is. The
 * consumer record says the format, its DEK wrapped without the header.
 */
static void
to_older_layout(struct test_vault *f, const char *id, int format)
{
	static struct value_list l;
	static struct manifest_entry e[8];
	uint8_t ref[CRYPTO_REF_BYTES], key[RECORD_ATTR_KEY_MAX];
	uint8_t crec[RECORD_CONSUMER_BYTES], man[1024], rec[RECORD_ATTR_MAX];
	uint8_t *dek = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	struct values_taken t;
	struct consumer_rec cr;
	struct store_txn *txn;
	struct store_val v;
	size_t n = 0, rlen;

	test_ref(f->v, id, ref);
	assert_non_null(dek);
	assert_int_equal(store_write_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, STORE_CONSUMERS, ref, sizeof(ref), &v),
	    0);
	memcpy(crec, v.data, sizeof(crec));
	v = (struct store_val){ sizeof(crec), crec };
	assert_int_equal(record_parse_consumer(&v, &cr), 0);
	assert_int_equal(cr.format, RECORD_CONSUMER_BOUND);
	assert_int_equal(record_unwrap_dek(f->v->kr, txn, ref, &cr, dek), 0);
	if (format != RECORD_CONSUMER_VALUES) {
		assert_int_equal(consumer_values_take(f->v, txn, ref, &cr, dek,
		    &l, &t), 0);
		assert_int_equal(store_del(txn, STORE_ATTRS, ref, sizeof(ref),
		    NULL, 0), 0);
		for (size_t i = 0; i < l.n; i++) {
			char name[SCHEMA_NAME_MAX];

			memcpy(name, l.e[i].name, l.e[i].name_len);
			name[l.e[i].name_len] = '\0';
			assert_int_equal(record_seal_attr(dek, ref, name,
			    cr.dek_generation, (const char *)l.e[i].value,
			    l.e[i].len, l.e[i].updated_ms, rec, &rlen), 0);
			assert_int_equal(store_put(txn, STORE_ATTRS, key,
			    record_attr_key(key, ref, name), rec, rlen, 0), 0);
			assert_int_equal(record_manifest_set(e, &n, 8, name,
			    l.e[i].name_len, l.e[i].updated_ms), 0);
		}
		consumer_values_release(&t);
	}
	if (format == RECORD_CONSUMER_MANIFEST) {
		size_t len = record_manifest_seal(keyring_index_key(f->v->kr), ref,
		    e, n, man);

		assert_int_equal(store_put(txn, STORE_MANIFESTS, ref, sizeof(ref),
		    man, len, 0), 0);
	}
	crec[0] = (uint8_t)format;
	assert_int_equal(record_wrap_dek(f->v->kr, ref, dek, crec), 0);
	crypto_secret_free(dek);
	assert_int_equal(store_put(txn, STORE_CONSUMERS, ref, sizeof(ref), crec,
	    sizeof(crec), 0), 0);
	assert_int_equal(store_write_commit(txn), 0);
}

static int
rotation_ok(const struct rotation_progress *p, void *arg)
{
	(void)p;
	(void)arg;
	return 0;
}

/* The consumer format of id, and whether a record is at key in sp. */
static int
format_of(struct test_vault *f, const char *id)
{
	struct store_txn *txn;
	struct store_val v;
	int fmt;

	assert_int_equal(store_read_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, STORE_CONSUMERS, TEST_REF(f->v, id),
	    CRYPTO_REF_BYTES, &v), 0);
	fmt = ((const uint8_t *)v.data)[0];
	store_read_end(txn);
	return fmt;
}

static bool
has(struct test_vault *f, enum store_space sp, const void *key, size_t len)
{
	struct store_txn *txn;
	struct store_val v;
	int rc;

	assert_int_equal(store_read_begin(f->v->store, &txn), 0);
	rc = store_get(txn, sp, key, len, &v);
	store_read_end(txn);
	assert_true(rc == 0 || rc == VAULT_ERR_NOT_FOUND);
	return rc == 0;
}

static void
assert_values(struct test_vault *f, const char *id, const char *email,
    const char *zip, const char *age)
{
	const char *want[3] = { email, zip, age };
	struct consumer_values cv;
	size_t i = 0;

	assert_int_equal(consumer_get(f->v, TEST_REF(f->v, id), 0, NULL, 0, &cv),
	    0);
	for (int a = 0; a < 3; a++) {
		if (want[a] == NULL)
			continue;
		assert_true(i < cv.n);
		assert_int_equal(cv.v[i].attr, a);
		assert_string_equal(cv.v[i].value, want[a]);
		i++;
	}
	assert_int_equal(cv.n, i);
	consumer_values_clear(&cv);
}

/* Consumers of formats 1 to 3 read as before; a write moves them to 4. */
static void
test_older_layouts_read_and_move_on_write(void **state)
{
	struct test_vault *f = *state;
	uint8_t key[RECORD_ATTR_KEY_MAX], ref[CRYPTO_REF_BYTES];
	struct consumer_values cv, cv2;
	uint32_t gen;

	put1(f, "alice", 0, "alice@example.com");
	put1(f, "alice", 1, "94103");
	put1(f, "bob", 0, "bob@example.com");
	assert_int_equal(format_of(f, "alice"), RECORD_CONSUMER_BOUND);
	to_older_layout(f, "alice", RECORD_CONSUMER_MANIFEST);
	to_older_layout(f, "bob", RECORD_FORMAT);
	test_ref(f->v, "alice", ref);
	assert_true(has(f, STORE_ATTRS, key, record_attr_key(key, ref, "zip")));
	assert_false(has(f, STORE_ATTRS, ref, sizeof(ref)));
	assert_values(f, "alice", "alice@example.com", "94103", NULL);
	assert_values(f, "bob", "bob@example.com", NULL, NULL);

	/* A put moves alice to one record, keeping what was there. */
	put1(f, "alice", 2, "41");
	assert_int_equal(format_of(f, "alice"), RECORD_CONSUMER_BOUND);
	assert_false(has(f, STORE_ATTRS, key, record_attr_key(key, ref, "zip")));
	assert_false(has(f, STORE_MANIFESTS, ref, sizeof(ref)));
	assert_true(has(f, STORE_ATTRS, ref, sizeof(ref)));
	assert_values(f, "alice", "alice@example.com", "94103", "41");

	/* A key rotation moves bob (format 1) the same way. */
	assert_int_equal(rotation_consumer_key(f->v, TEST_REF(f->v, "bob"),
	    &gen), 0);
	assert_int_equal(gen, 2);
	assert_int_equal(format_of(f, "bob"), RECORD_CONSUMER_BOUND);
	assert_values(f, "bob", "bob@example.com", NULL, NULL);

	/*
	 * Format 3 (a values record, the header not bound): read as it is; a
	 * put binds the header, and so does a master key rotation.
	 */
	put1(f, "dave", 0, "dave@example.com");
	put1(f, "erin", 1, "10001");
	to_older_layout(f, "dave", RECORD_CONSUMER_VALUES);
	to_older_layout(f, "erin", RECORD_CONSUMER_VALUES);
	assert_int_equal(format_of(f, "dave"), RECORD_CONSUMER_VALUES);
	assert_values(f, "dave", "dave@example.com", NULL, NULL);
	assert_values(f, "erin", NULL, "10001", NULL);
	put1(f, "dave", 2, "33");
	assert_int_equal(format_of(f, "dave"), RECORD_CONSUMER_BOUND);
	assert_values(f, "dave", "dave@example.com", NULL, "33");
	{
		struct rotation_progress p;
		char why[256];

		assert_int_equal(rotation_start(f->v, 0, &p, why, sizeof(why)),
		    0);
		assert_int_equal(rotation_run(f->v, rotation_ok, NULL), 0);
	}
	assert_int_equal(format_of(f, "erin"), RECORD_CONSUMER_BOUND);
	assert_values(f, "erin", NULL, "10001", NULL);
	assert_values(f, "dave", "dave@example.com", NULL, "33");

	/*
	 * The sealed seed copied in as a record named "seed" would open under
	 * the DEK (the same AD): it is refused, not exported.
	 */
	put1(f, "carol", 0, "carol@example.com");
	to_older_layout(f, "carol", RECORD_FORMAT);
	{
		uint8_t cref[CRYPTO_REF_BYTES], rec[RECORD_ATTR_MAX];
		struct consumer_rec cr;
		struct store_txn *txn;
		struct store_val sv;

		test_ref(f->v, "carol", cref);
		assert_int_equal(store_write_begin(f->v->store, &txn), 0);
		assert_int_equal(store_get(txn, STORE_CONSUMERS, cref,
		    sizeof(cref), &sv), 0);
		assert_int_equal(record_parse_consumer(&sv, &cr), 0);
		memset(rec, 0, RECORD_ATTR_HDR);
		rec[0] = RECORD_FORMAT;
		memcpy(rec + RECORD_ATTR_HDR, cr.sealed_seed,
		    RECORD_SEALED_KEY_BYTES);
		assert_int_equal(store_put(txn, STORE_ATTRS, key,
		    record_attr_key(key, cref, "seed"), rec,
		    RECORD_ATTR_HDR + RECORD_SEALED_KEY_BYTES, 0), 0);
		assert_int_equal(store_write_commit(txn), 0);
		assert_int_equal(consumer_get(f->v, cref, -1, NULL, 0, &cv2),
		    VAULT_ERR_CRYPTO);
	}

	/* Format 2: a record its manifest lists, gone, is DATA_LOSS. */
	to_older_layout(f, "alice", RECORD_CONSUMER_MANIFEST);
	{
		struct store_txn *txn;

		assert_int_equal(store_write_begin(f->v->store, &txn), 0);
		assert_int_equal(store_del(txn, STORE_ATTRS, key,
		    record_attr_key(key, ref, "zip"), NULL, 0), 0);
		assert_int_equal(store_write_commit(txn), 0);
	}
	assert_int_equal(consumer_get(f->v, ref, 0, NULL, 0, &cv),
	    VAULT_ERR_CRYPTO);
}

struct expire_job {
	struct vault *v;
	const char *id;
	uint64_t now;
	char names[128];
	uint64_t removed;
};

static int
expire_apply(struct store_txn *txn, void *arg)
{
	struct expire_job *j = arg;

	return consumer_expire_txn(j->v, txn, TEST_REF(j->v, j->id), j->now,
	    j->names, sizeof(j->names), &j->removed);
}

/* The DEK generation of id's consumer record. */
static uint32_t
generation_of(struct test_vault *f, const char *id)
{
	struct store_txn *txn;
	struct store_val v;
	uint32_t gen;

	assert_int_equal(store_read_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, STORE_CONSUMERS, TEST_REF(f->v, id),
	    CRYPTO_REF_BYTES, &v), 0);
	gen = store_get_u32((const uint8_t *)v.data + RECORD_CONSUMER_GEN);
	store_read_end(txn);
	return gen;
}

/*
 * Retention: a value past its attribute's retain_days is erased, the rest
 * sealed again under the next DEK generation; a consumer of an older
 * layout moves to one record and format 4; nothing expired, nothing moves.
 */
static void
test_expired_values_are_erased_under_a_new_key(void **state)
{
	struct test_vault *f = *state;
	struct expire_job j = { .v = f->v, .id = "alice" };
	uint64_t day = 86400000ULL;

	put1(f, "alice", 0, "alice@example.com");
	put1(f, "alice", 1, "94103");
	put1(f, "bob", 1, "10001");
	to_older_layout(f, "bob", RECORD_CONSUMER_MANIFEST);
	f->v->schema->attrs[1].retain_days = 2;		/* zip */
	j.now = store_now_ms() + day;
	assert_int_equal(writer_submit(f->v->wr, expire_apply, &j), 0);
	assert_int_equal(j.removed, 0);
	assert_int_equal(generation_of(f, "alice"), 1);
	j.now = store_now_ms() + 3 * day;
	assert_int_equal(writer_submit(f->v->wr, expire_apply, &j), 0);
	assert_int_equal(j.removed, 1);
	assert_string_equal(j.names, "zip");
	assert_int_equal(generation_of(f, "alice"), 2);
	f->v->schema->attrs[1].retain_days = 0;
	assert_values(f, "alice", "alice@example.com", NULL, NULL);
	j.id = "bob";
	f->v->schema->attrs[1].retain_days = 2;
	assert_int_equal(writer_submit(f->v->wr, expire_apply, &j), 0);
	f->v->schema->attrs[1].retain_days = 0;
	assert_int_equal(j.removed, 1);
	assert_int_equal(format_of(f, "bob"), RECORD_CONSUMER_BOUND);
	assert_values(f, "bob", NULL, NULL, NULL);
	/* A consumer deleted meanwhile is passed over. */
	j.id = "nobody";
	assert_int_equal(writer_submit(f->v->wr, expire_apply, &j), 0);
	assert_int_equal(j.removed, 0);

	/*
	 * The pass: a deleted consumer of the older layout whose records wait
	 * for the collector, an expired one not its first, is passed over,
	 * and the pass ends (it once met that record again and again).
	 */
	{
		struct deletion_request req = { TEST_REF(f->v, "dan"), "req-dan" };
		struct retention_done done;
		struct receipt rc;
		size_t bad;

		put1(f, "dan", 0, "dan@example.com");
		put1(f, "dan", 1, "02139");
		to_older_layout(f, "dan", RECORD_FORMAT);
		assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
		receipt_clear(&rc);
		put1(f, "erin", 1, "10001");
		f->v->schema->attrs[1].retain_days = 2;
		assert_int_equal(retention_pass(f->v, store_now_ms() + 3 * day,
		    &done), 0);
		f->v->schema->attrs[1].retain_days = 0;
		assert_int_equal(done.consumers, 1);	/* erin */
		assert_int_equal(done.values, 1);
	}
}

/* How many consumers the DROP index holds under email's Email hash. */
static size_t
drop_matches(struct test_vault *f, const char *email, uint8_t ref[32])
{
	const char *values[DROP_FIELDS] = { [DROP_F_EMAIL] = email };
	size_t lens[DROP_FIELDS] = { [DROP_F_EMAIL] = strlen(email) }, n;
	uint8_t hash[DROP_HASH_BYTES], refs[4][32];

	assert_true(drop_hash(DROP_LIST_EMAIL, values, lens, hash));
	assert_int_equal(drop_lookup(f->v, DROP_LIST_EMAIL, hash, refs, 4, &n),
	    0);
	if (n > 0 && ref != NULL)
		memcpy(ref, refs[0], 32);
	return n;
}

/*
 * The DROP index follows every write of an identifier: a put (a shared
 * identifier indexes both consumers), a new value, a deletion, a value
 * expired; and the build indexes the consumers written before.
 */
static void
test_drop_index_follows_writes(void **state)
{
	struct test_vault *f = *state;
	struct deletion_request req = { TEST_REF(f->v, "bob"), "req-drop" };
	struct receipt rc;
	uint8_t ref[32];
	size_t bad;
	bool built;

	f->v->schema->attrs[0].drop = DROP_F_EMAIL;
	put1(f, "alice", 0, "Alice@Example.com ");
	assert_int_equal(drop_matches(f, "alice@example.com", ref), 1);
	assert_memory_equal(ref, TEST_REF(f->v, "alice"), 32);
	put1(f, "bob", 0, "alice@example.com");
	assert_int_equal(drop_matches(f, "ALICE@example.com", NULL), 2);
	put1(f, "alice", 0, "alice2@example.com");
	put1(f, "alice", 1, "94103");		/* another attribute: no change */
	assert_int_equal(drop_matches(f, "alice@example.com", ref), 1);
	assert_memory_equal(ref, TEST_REF(f->v, "bob"), 32);
	assert_int_equal(drop_matches(f, "alice2@example.com", NULL), 1);
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	receipt_clear(&rc);
	assert_int_equal(drop_matches(f, "alice@example.com", NULL), 0);

	/* Written while no attribute was an identifier: the build finds it. */
	f->v->schema->attrs[0].drop = DROP_F_NONE;
	put1(f, "carol", 0, "carol@example.com");
	f->v->schema->attrs[0].drop = DROP_F_EMAIL;
	assert_int_equal(drop_matches(f, "carol@example.com", NULL), 0);
	assert_int_equal(drop_index_build(f->v, &built), 0);
	assert_true(built);
	assert_int_equal(drop_matches(f, "carol@example.com", NULL), 1);
	assert_int_equal(drop_matches(f, "alice2@example.com", NULL), 1);
	assert_int_equal(drop_matches(f, "alice@example.com", NULL), 0);

	/* An expired identifier leaves the index with its value. */
	{
		struct expire_job j = { .v = f->v, .id = "carol",
		    .now = store_now_ms() + 3 * 86400000ULL };

		f->v->schema->attrs[0].retain_days = 2;
		assert_int_equal(writer_submit(f->v->wr, expire_apply, &j), 0);
		f->v->schema->attrs[0].retain_days = 0;
		assert_int_equal(j.removed, 1);
	}
	assert_int_equal(drop_matches(f, "carol@example.com", NULL), 0);
	f->v->schema->attrs[0].drop = DROP_F_NONE;
}

#define WRITER_TESTS(setup, teardown) \
	cmocka_unit_test_setup_teardown(test_group_commit_isolates_requests, \
	    setup, teardown), \
	cmocka_unit_test_setup_teardown(test_lazy_and_durable_mixed, setup, \
	    teardown), \
	cmocka_unit_test_setup_teardown(test_lazy_group_with_a_failure, setup, \
	    teardown), \
	cmocka_unit_test_setup_teardown(test_lazy_runs_on_the_caller_when_idle, \
	    setup, teardown), \
	cmocka_unit_test_setup_teardown(test_put_get_delete, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_request_sweep_reaches_every_record, \
	    setup, teardown), \
	cmocka_unit_test_setup_teardown(test_moved_value_fails_to_open, setup, \
	    teardown), \
	cmocka_unit_test_setup_teardown(test_changed_header_fails_to_unwrap, \
	    setup, teardown), \
	cmocka_unit_test_setup_teardown( \
	    test_expired_values_are_erased_under_a_new_key, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_drop_index_follows_writes, setup, \
	    teardown), \
	cmocka_unit_test_setup_teardown( \
	    test_older_layouts_read_and_move_on_write, setup, teardown)

int
main(void)
{
	const struct CMUnitTest lmdb[] = {
		WRITER_TESTS(test_vault_setup, test_vault_teardown),
		/* The map's high-water mark and data.mdb's reserve: LMDB's. */
		cmocka_unit_test_setup_teardown(test_store_headroom,
		    test_vault_setup, test_vault_teardown),
	};
	const struct CMUnitTest pg_vault[] = {
		WRITER_TESTS(testpg_vault_setup, testpg_vault_teardown),
		cmocka_unit_test_setup_teardown(test_pg_no_plaintext_on_server,
		    testpg_vault_setup, testpg_vault_teardown),
	};
	const struct CMUnitTest pg_replicas[] = {
		cmocka_unit_test(test_pg_two_writers),
	};
	int failed = cmocka_run_group_tests_name("writer on LMDB", lmdb, NULL,
	    NULL);

	if (testpg_conninfo() == NULL) {
		testpg_say_skipped("test_writer");
		return failed;
	}
	failed += cmocka_run_group_tests_name("writer replicas on PostgreSQL",
	    pg_replicas, NULL, NULL);
	if (!testpg_vault_supported()) {
		printf("[  SKIPPED ] test_writer's vault on PostgreSQL: "
		    "store_open_params refuses PostgreSQL in this build\n");
		return failed;
	}
	return failed + cmocka_run_group_tests_name("writer on PostgreSQL",
	    pg_vault, NULL, NULL);
}
