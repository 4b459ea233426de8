#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "engine/fetch.h"
#include "engine/shardmeet.h"
#include "engine/spill.h"
#include "util/timeutil.h"

/* Positions spread over the whole 64-bit range, as keyed hashes are. */
static uint64_t
spread(uint64_t i)
{
	uint64_t x = i + 0x9e3779b97f4a7c15ULL;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void
test_one_shard_is_everything(void **state)
{
	(void)state;
	for (uint64_t i = 0; i < 1000; i++) {
		assert_int_equal(fetch_shard_of(spread(i), 1), 0);
		assert_int_equal(fetch_shard_of(spread(i), 0), 0);
	}
	assert_int_equal(fetch_shard_of(UINT64_MAX, 1), 0);
}

static void
test_every_shard_hit_and_in_range(void **state)
{
	static const uint32_t counts[] = { 2, 3, 7, 64, FETCH_MAX_SHARDS };
	static unsigned hits[FETCH_MAX_SHARDS];

	(void)state;
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t n = counts[c];

		memset(hits, 0, sizeof(hits));
		for (uint64_t i = 0; i < 64 * (uint64_t)n; i++) {
			uint32_t s = fetch_shard_of(spread(i), n);

			assert_true(s < n);
			hits[s]++;
		}
		for (uint32_t s = 0; s < n; s++)
			assert_true(hits[s] > 0);
		/* The ends of the range: first and last shard. */
		assert_int_equal(fetch_shard_of(0, n), 0);
		assert_int_equal(fetch_shard_of(UINT64_MAX, n), n - 1);
	}
}

/* Shards are contiguous slices: the shard never falls as the position grows. */
static void
test_shards_are_slices(void **state)
{
	uint64_t step = UINT64_MAX / 100003;
	uint32_t prev = 0;

	(void)state;
	for (uint64_t o = 0; o <= UINT64_MAX - step; o += step) {
		uint32_t s = fetch_shard_of(o, 7);

		assert_true(s >= prev && s <= prev + 1);
		prev = s;
	}
	assert_int_equal(prev, 6);
	/* The slice boundaries: 2^64 / 2 starts shard 1 of 2. */
	assert_int_equal(fetch_shard_of((1ULL << 63) - 1, 2), 0);
	assert_int_equal(fetch_shard_of(1ULL << 63, 2), 1);
}

/* Each shard starts where fetch_shard_of says it does, to the position. */
static void
test_shard_starts_invert_shard_of(void **state)
{
	static const uint32_t counts[] = { 2, 3, 7, 64, 1000, FETCH_MAX_SHARDS };

	(void)state;
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t n = counts[c];

		assert_int_equal(fetch_shard_start(0, n), 0);
		for (uint32_t i = 1; i < n; i++) {
			uint64_t lo = fetch_shard_start(i, n);

			assert_int_equal(fetch_shard_of(lo, n), i);
			assert_int_equal(fetch_shard_of(lo - 1, n), i - 1);
		}
	}
}

/* ----------------------------------------------------------- the spill */

#define ROW 40
#define MARK "plaintext-mark-"

static const char *
tmp_dir(void)
{
	const char *d = getenv("TMPDIR");

	return d != NULL && *d != '\0' ? d : "/tmp";
}

static void
make_row(uint8_t row[ROW], uint32_t i)
{
	memset(row, 0, ROW);
	snprintf((char *)row, ROW, MARK "%u", (unsigned)i);
}

struct got {
	uint32_t *rows;
	size_t n;
};

static int
collect(void *arg, const void *rows, size_t n)
{
	struct got *g = arg;
	const uint8_t *b = rows;

	for (size_t i = 0; i < n; i++, b += ROW) {
		unsigned v;

		assert_int_equal(sscanf((const char *)b, MARK "%u", &v), 1);
		g->rows[g->n++] = v;
	}
	return 0;
}

static int
refuse(void *arg, const void *rows, size_t n)
{
	(void)arg;
	(void)rows;
	(void)n;
	return VAULT_ERR_LIMIT;
}

/* Rows come back by bucket, each in the order added, sealed ones and all. */
static void
test_spill_gives_back_each_bucket_in_order(void **state)
{
	enum { N = 5000, BUCKETS = 3 };
	uint32_t *got = calloc(N, sizeof(*got));
	struct spill *s;
	uint8_t row[ROW];
	size_t seen = 0;

	(void)state;
	assert_non_null(got);
	assert_int_equal(spill_open(&s, tmp_dir(), BUCKETS, ROW, UINT64_MAX), 0);
	for (uint32_t i = 0; i < N; i++) {
		make_row(row, i);
		assert_int_equal(spill_add(s, i % BUCKETS, row), 0);
	}
	for (size_t b = 0; b < BUCKETS; b++) {
		struct got g = { got, 0 };

		assert_int_equal(spill_count(s, b), (N - b + BUCKETS - 1) / BUCKETS);
		assert_int_equal(spill_read(s, b, collect, &g), 0);
		assert_int_equal(g.n, spill_count(s, b));
		for (size_t i = 0; i < g.n; i++)
			assert_int_equal(got[i], b + i * BUCKETS);
		seen += g.n;
	}
	assert_int_equal(seen, N);
	/* The callback's refusal ends the read, and is its result. */
	assert_int_equal(spill_read(s, 0, refuse, NULL), VAULT_ERR_LIMIT);
	spill_close(s);
	free(got);
}

/* The descriptor of the newest unnamed file under dir, or -1. */
static int
unnamed_fd(const char *dir)
{
	char path[PATH_MAX], link[PATH_MAX];
	struct dirent *e;
	int best = -1;
	DIR *d = opendir("/proc/self/fd");

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		if ((n = readlink(path, link, sizeof(link) - 1)) < 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, dir, strlen(dir)) == 0 &&
		    strstr(link, "(deleted)") != NULL && atoi(e->d_name) > best)
			best = atoi(e->d_name);
	}
	closedir(d);
	return best;
}

static size_t
dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/*
 * The file has no name, holds no row in the clear, and a byte changed in
 * it fails the read instead of changing a row.
 */
static void
test_spill_file_is_sealed_and_unnamed(void **state)
{
	enum { N = 2000 };
	const char *dir = tmp_dir();
	size_t before = dir_entries(dir), len = 0;
	struct spill *s;
	uint8_t row[ROW], *file;
	struct got g = { calloc(N, sizeof(uint32_t)), 0 };
	off_t size;
	int fd;

	(void)state;
	assert_non_null(g.rows);
	assert_int_equal(spill_open(&s, dir, 1, ROW, UINT64_MAX), 0);
	for (uint32_t i = 0; i < N; i++) {
		make_row(row, i);
		assert_int_equal(spill_add(s, 0, row), 0);
	}
	assert_int_equal(dir_entries(dir), before);
	fd = unnamed_fd(dir);
	assert_true(fd >= 0);
	size = lseek(fd, 0, SEEK_END);
	/* Most rows are sealed (the last block may still be in memory). */
	assert_true(size > (off_t)(N / 2 * ROW));
	file = malloc((size_t)size);
	assert_non_null(file);
	while (len < (size_t)size) {
		ssize_t got = pread(fd, file + len, (size_t)size - len, (off_t)len);

		assert_true(got > 0);
		len += (size_t)got;
	}
	assert_null(memmem(file, len, MARK, strlen(MARK)));
	assert_null(memmem(file, len, "plaintext", 9));
	/* Intact, every row comes back; one byte flipped, none does. */
	assert_int_equal(spill_read(s, 0, collect, &g), 0);
	assert_int_equal(g.n, N);
	file[len / 2] ^= 1;
	assert_int_equal(pwrite(fd, file + len / 2, 1, (off_t)(len / 2)), 1);
	g.n = 0;
	assert_int_equal(spill_read(s, 0, collect, &g), VAULT_ERR_CRYPTO);
	spill_close(s);
	assert_int_equal(dir_entries(dir), before);
	free(file);
	free(g.rows);
}

static void
test_spill_refuses_a_missing_directory(void **state)
{
	struct spill *s = (void *)1;

	(void)state;
	assert_int_equal(spill_open(&s, "/nonexistent/vault-spill", 2, ROW,
	    UINT64_MAX), VAULT_ERR_IO);
	assert_null(s);
}

/*
 * The files of all spills together stay within max_total: a block past it
 * is refused (LIMIT), and a spill closed gives its bytes back.
 */
static void
test_spills_share_a_limit(void **state)
{
	enum { LIMIT = 64 << 10 };
	struct spill *a, *b;
	uint8_t row[ROW];
	uint32_t i;
	int r = 0;

	(void)state;
	memset(row, 7, sizeof(row));
	assert_int_equal(spill_open(&a, tmp_dir(), 1, ROW, LIMIT), 0);
	assert_int_equal(spill_open(&b, tmp_dir(), 1, ROW, LIMIT), 0);
	for (i = 0; i < 1000; i++)		/* 40 KB: within the limit */
		assert_int_equal(spill_add(a, 0, row), 0);
	for (i = 0; i < 100000 && r == 0; i++)
		r = spill_add(b, 0, row);
	assert_int_equal(r, VAULT_ERR_LIMIT);
	/* Of the two, at most the limit: b took what a left. */
	assert_true(i * ROW < LIMIT);
	spill_close(a);
	assert_int_equal(spill_add(b, 0, row), 0);
	spill_close(b);
}

static const uint8_t key_a[SHARDMEET_KEY_BYTES] = { 1 };
static const uint8_t key_b[SHARDMEET_KEY_BYTES] = { 2 };

static struct shardmeet_part
part_of(uint64_t t)
{
	struct shardmeet_part p = { malloc(sizeof(*p.counts)), 1 };

	assert_non_null(p.counts);
	p.counts[0] = (struct shardmeet_count){ t, 1, 0 };
	return p;
}

/* How old a meet may be and still take a call, in these tests. */
#define AGE 60000

static void
test_calls_of_one_query_meet(void **state)
{
	struct shardmeet *m0, *m1, *again, *other, *elsewhere;
	struct shardmeet_part parts[2];
	bool posted[2];
	int owner = 0, owner2 = 0;

	(void)state;
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 0, AGE, &m0), 0);
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 1, AGE, &m1), 0);
	assert_ptr_equal(m0, m1);
	/* A shard taken already, another query, another owner: apart. */
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 0, AGE, &again), 0);
	assert_ptr_not_equal(again, m0);
	assert_int_equal(shardmeet_join(&owner, key_b, 2, 1, AGE, &other), 0);
	assert_ptr_not_equal(other, m0);
	assert_ptr_not_equal(other, again);
	assert_int_equal(shardmeet_join(&owner2, key_a, 2, 1, AGE, &elsewhere), 0);
	assert_ptr_not_equal(elsewhere, m0);
	shardmeet_leave(again, 0);
	shardmeet_leave(other, 1);
	shardmeet_leave(elsewhere, 1);

	shardmeet_post(m1, 1, part_of(7));
	/* Shard 1 has posted: shard 0 waits for nobody. */
	assert_int_equal(shardmeet_wait(m0, 0, time_monotonic_ms() + 5000,
	    NULL, NULL), 0);
	shardmeet_parts(m0, posted, parts);
	assert_false(posted[0]);
	assert_true(posted[1]);
	assert_int_equal(parts[1].counts[0].token, 7);
	/* The part outlives its poster while shard 0 is in the meet. */
	shardmeet_leave(m1, 1);
	shardmeet_parts(m0, posted, parts);
	assert_true(posted[1]);
	assert_int_equal(parts[1].counts[0].token, 7);
	shardmeet_leave(m0, 0);
}

static void
test_a_call_that_leaves_without_posting_frees_its_shard(void **state)
{
	struct shardmeet *m0, *m1, *m1b;
	long long t0;
	int owner = 0;

	(void)state;
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 0, AGE, &m0), 0);
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 1, AGE, &m1), 0);
	/* Shard 1 is taken, not posted: the wait lasts until its deadline. */
	t0 = time_monotonic_ms();
	assert_int_equal(shardmeet_wait(m0, 0, t0 + 250, NULL, NULL), 0);
	assert_true(time_monotonic_ms() - t0 >= 250);
	shardmeet_leave(m1, 1);
	/* Gone: nobody to wait for, and the shard may be taken again here. */
	t0 = time_monotonic_ms();
	assert_int_equal(shardmeet_wait(m0, 0, t0 + 5000, NULL, NULL), 0);
	assert_true(time_monotonic_ms() - t0 < 5000);
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 1, AGE, &m1b), 0);
	assert_ptr_equal(m1b, m0);
	shardmeet_leave(m1b, 1);
	shardmeet_leave(m0, 0);
}

static void
test_an_old_meet_takes_no_new_call(void **state)
{
	struct shardmeet *m0, *late;
	int owner = 0;

	(void)state;
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 0, AGE, &m0), 0);
	/* Shard 1 is free in m0, but m0 is older than a zero age allows. */
	assert_int_equal(shardmeet_join(&owner, key_a, 2, 1, 0, &late), 0);
	assert_ptr_not_equal(late, m0);
	shardmeet_leave(late, 1);
	shardmeet_leave(m0, 0);
}

static bool
always(void *arg)
{
	(void)arg;
	return true;
}

static void
test_a_cancelled_wait_ends(void **state)
{
	struct shardmeet *m0, *m1;
	int owner = 0;

	(void)state;
	assert_int_equal(shardmeet_join(&owner, key_b, 3, 0, AGE, &m0), 0);
	assert_int_equal(shardmeet_join(&owner, key_b, 3, 2, AGE, &m1), 0);
	assert_int_equal(shardmeet_wait(m0, 0, time_monotonic_ms() + 60000,
	    always, NULL), VAULT_ERR_CANCELLED);
	shardmeet_leave(m0, 0);
	shardmeet_leave(m1, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_shard_is_everything),
		cmocka_unit_test(test_every_shard_hit_and_in_range),
		cmocka_unit_test(test_shards_are_slices),
		cmocka_unit_test(test_shard_starts_invert_shard_of),
		cmocka_unit_test(test_spill_gives_back_each_bucket_in_order),
		cmocka_unit_test(test_spill_file_is_sealed_and_unnamed),
		cmocka_unit_test(test_spill_refuses_a_missing_directory),
		cmocka_unit_test(test_spills_share_a_limit),
		cmocka_unit_test(test_calls_of_one_query_meet),
		cmocka_unit_test(test_a_call_that_leaves_without_posting_frees_its_shard),
		cmocka_unit_test(test_an_old_meet_takes_no_new_call),
		cmocka_unit_test(test_a_cancelled_wait_ends),
	};

	if (crypto_init() != 0)		/* the spill's locked key */
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
