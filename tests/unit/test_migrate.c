/*
 * The store format migration framework (store/migrate.h), with a synthetic
 * version bump: a store set to format 0 (or 4), and test-only step tables.
 * Also the compact copy and swap (store/copy.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/copy.h"
#include "store/meta.h"
#include "store/migrate.h"
#include "store/store.h"
#include "testutil.h"

#define MAP (16 << 20)

static const char marker[] = "migrated-from-0";

/* A test step 0 -> 1: leaves a marker, so the test sees it ran. */
static int
step_0_to_1(struct store_txn *txn)
{
	return store_put(txn, STORE_META, marker, strlen(marker), "y", 1, 0);
}

/* A step with nothing to write (as the built-in 1 -> 2 and 2 -> 3). */
static int
step_nothing(struct store_txn *txn)
{
	(void)txn;
	return 0;
}

static int
step_fails(struct store_txn *txn)
{
	(void)step_0_to_1(txn);		/* written, then undone with the txn */
	return VAULT_ERR_STORE;
}

/* A store in dir whose format record says version. */
static void
make_store_at(const char *dir, uint32_t version)
{
	struct store *st = NULL;
	struct store_txn *txn = NULL;
	uint8_t fmt[4];

	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_int_equal(store_write_begin(st, &txn), 0);
	store_put_u32(fmt, version);
	assert_int_equal(meta_put(txn, META_STORE_FORMAT, 0, fmt, 4), 0);
	assert_int_equal(store_write_commit(txn), 0);
	store_close(st);
}

static bool
has_marker(const char *dir)
{
	struct store *st = NULL;
	struct store_txn *txn = NULL;
	struct store_val v;
	int rc;

	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_int_equal(store_read_begin(st, &txn), 0);
	rc = store_get(txn, STORE_META, marker, strlen(marker), &v);
	store_read_end(txn);
	store_close(st);
	return rc == 0;
}

static void
test_older_store_is_refused_then_migrated(void **state)
{
	static const struct store_migration steps[] = {
		{ 0, "test step", step_0_to_1 },
		{ 1, "nothing", step_nothing },
		{ 2, "nothing", step_nothing },
		{ 3, "nothing", step_nothing },
	};
	char *dir = test_tmpdir();
	struct store *st = NULL;
	uint32_t from, to;

	(void)state;
	assert_int_equal(STORE_FORMAT_VERSION, 4);	/* the table above */
	make_store_at(dir, 0);
	assert_int_equal(store_open(&st, dir, MAP), VAULT_ERR_STATE);
	assert_null(st);
	assert_int_equal(store_migrate_steps(dir, MAP, steps, 4, 4, &from, &to), 0);
	assert_int_equal(from, 0);
	assert_int_equal(to, 4);
	assert_true(has_marker(dir));		/* opens at format 4 now */
	/* Again: current, nothing to do. */
	assert_int_equal(store_migrate_steps(dir, MAP, steps, 4, 4, &from, &to), 0);
	assert_int_equal(from, 4);
	assert_int_equal(to, 4);
	test_rmtree(dir);
	free(dir);
}

static void
test_failed_step_leaves_the_old_version(void **state)
{
	static const struct store_migration steps[] = {
		{ 0, "fails", step_fails },
	};
	char *dir = test_tmpdir();
	struct store *st = NULL;
	uint32_t from, to;

	(void)state;
	make_store_at(dir, 0);
	assert_int_equal(store_migrate_steps(dir, MAP, steps, 1, 1, &from, &to),
	    VAULT_ERR_STORE);
	assert_int_equal(to, 0);
	assert_int_equal(store_open(&st, dir, MAP), VAULT_ERR_STATE);
	test_rmtree(dir);
	free(dir);
}

static void
test_missing_step_and_newer_store_are_refused(void **state)
{
	char *dir = test_tmpdir();
	uint32_t from, to;

	(void)state;
	make_store_at(dir, 0);
	/* The built-in table has no step from 0. */
	assert_int_equal(store_migrate(dir, MAP, &from, &to), VAULT_ERR_STATE);
	assert_int_equal(from, 0);
	assert_int_equal(to, 0);
	test_rmtree(dir);
	free(dir);
	dir = test_tmpdir();
	make_store_at(dir, STORE_FORMAT_VERSION + 1);
	assert_int_equal(store_migrate(dir, MAP, &from, &to), VAULT_ERR_STATE);
	assert_int_equal(from, STORE_FORMAT_VERSION + 1);
	assert_int_equal(to, STORE_FORMAT_VERSION + 1);
	test_rmtree(dir);
	free(dir);
}

/*
 * The built-in table: format 1 (lineage by consumer) to 2, and 2 (a record
 * per attribute) to 3, from either.
 */
static void
test_builtin_step_from_1(void **state)
{
	struct store *st = NULL;
	uint32_t from, to;

	(void)state;
	for (uint32_t v = 1; v < STORE_FORMAT_VERSION; v++) {
		char *dir = test_tmpdir();

		make_store_at(dir, v);
		assert_int_equal(store_open(&st, dir, MAP), VAULT_ERR_STATE);
		assert_int_equal(store_migrate(dir, MAP, &from, &to), 0);
		assert_int_equal(from, v);
		assert_int_equal(to, STORE_FORMAT_VERSION);
		assert_int_equal(store_open(&st, dir, MAP), 0);
		store_close(st);
		test_rmtree(dir);
		free(dir);
	}
}

static void
test_two_steps_run_in_order(void **state)
{
	static const struct store_migration steps[] = {
		{ 4, "fifth", step_0_to_1 },	/* listed out of order on purpose */
		{ 0, "first", step_0_to_1 },
		{ 2, "third", step_nothing },
		{ 3, "fourth", step_nothing },
		{ 1, "second", step_nothing },
	};
	char *dir = test_tmpdir();
	uint32_t from, to;
	struct store *st = NULL;

	(void)state;
	make_store_at(dir, 0);
	assert_int_equal(store_migrate_steps(dir, MAP, steps, 5, 5, &from, &to), 0);
	assert_int_equal(to, 5);
	/* Format 5 is beyond this vaultd: store_open refuses it. */
	assert_int_equal(store_open(&st, dir, MAP), VAULT_ERR_STATE);
	test_rmtree(dir);
	free(dir);
}

static void
test_compact_swap_replaces_the_file(void **state)
{
	char *dir = test_tmpdir(), path[4200], blob[4000];
	struct store *st = NULL;
	struct store_txn *txn = NULL;
	struct stat a, b;
	uint64_t bytes, old;

	(void)state;
	memset(blob, 'v', sizeof(blob));
	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_int_equal(store_write_begin(st, &txn), 0);
	for (int i = 0; i < 500; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%04d", i);
		assert_int_equal(store_put(txn, STORE_ATTRS, k, strlen(k), blob,
		    sizeof(blob), 0), 0);
	}
	assert_int_equal(store_write_commit(txn), 0);
	assert_int_equal(store_write_begin(st, &txn), 0);
	for (int i = 1; i < 500; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%04d", i);
		assert_int_equal(store_del(txn, STORE_ATTRS, k, strlen(k), NULL,
		    0), 0);
	}
	assert_int_equal(store_write_commit(txn), 0);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_int_equal(stat(path, &a), 0);
	assert_int_equal(store_compact_prepare(st, dir, &bytes), 0);
	store_close(st);
	assert_int_equal(store_compact_swap(dir, &old), 0);
	assert_int_equal(stat(path, &b), 0);
	assert_int_equal(old, (uint64_t)a.st_size);
	assert_int_equal(bytes, (uint64_t)b.st_size);
	assert_true(b.st_size < a.st_size / 10);
	assert_true(a.st_ino != b.st_ino);
	snprintf(path, sizeof(path), "%s/data.mdb.old", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/data.mdb.compact", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	/* It opens, and holds what was left. */
	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_int_equal(store_read_begin(st, &txn), 0);
	{
		struct store_val v;

		assert_int_equal(store_get(txn, STORE_ATTRS, "k0000", 5, &v), 0);
		assert_int_equal(v.len, sizeof(blob));
		assert_int_equal(store_get(txn, STORE_ATTRS, "k0001", 5, &v),
		    VAULT_ERR_NOT_FOUND);
	}
	store_read_end(txn);
	store_close(st);
	test_rmtree(dir);
	free(dir);
}

/* A crash between link and rename leaves data.mdb.old as the live file's
 * second name: the next compaction must unlink it, never wipe it. */
static void
test_stale_link_is_not_wiped(void **state)
{
	char *dir = test_tmpdir(), data[4200], old[4200];
	struct store *st = NULL;
	struct store_txn *txn = NULL;
	struct store_val v;
	uint64_t bytes, was;

	(void)state;
	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_int_equal(store_write_begin(st, &txn), 0);
	assert_int_equal(store_put(txn, STORE_ATTRS, "k", 1, "v", 1, 0), 0);
	assert_int_equal(store_write_commit(txn), 0);
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(old, sizeof(old), "%s/data.mdb.old", dir);
	assert_int_equal(link(data, old), 0);
	assert_int_equal(store_compact_prepare(st, dir, &bytes), 0);
	store_close(st);
	assert_int_equal(store_compact_swap(dir, &was), 0);
	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_int_equal(store_read_begin(st, &txn), 0);
	assert_int_equal(store_get(txn, STORE_ATTRS, "k", 1, &v), 0);
	store_read_end(txn);
	store_close(st);
	test_rmtree(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_older_store_is_refused_then_migrated),
		cmocka_unit_test(test_failed_step_leaves_the_old_version),
		cmocka_unit_test(test_missing_step_and_newer_store_are_refused),
		cmocka_unit_test(test_builtin_step_from_1),
		cmocka_unit_test(test_two_steps_run_in_order),
		cmocka_unit_test(test_compact_swap_replaces_the_file),
		cmocka_unit_test(test_stale_link_is_not_wiped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
