#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engine/fetch.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_shard_is_everything),
		cmocka_unit_test(test_every_shard_hit_and_in_range),
		cmocka_unit_test(test_shards_are_slices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
