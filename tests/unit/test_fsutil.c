#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/fsutil.h"
#include "testutil.h"

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = calloc(1, 4096);

	assert_non_null(fp);
	*len = fread(buf, 1, 4095, fp);
	fclose(fp);
	return buf;
}

static void
test_write_atomic(void **state)
{
	char *dir = test_tmpdir(), path[4200], tmp[4300], *got;
	struct stat sb;
	size_t n;

	(void)state;
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(tmp, sizeof(tmp), "%s/f.tmp", dir);

	/* A stale temporary file (a crash before the rename) is replaced. */
	test_write_file(tmp, "half");
	assert_int_equal(fsutil_write_atomic(path, "one", 3, 0600, 0, NULL), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_not_equal(access(tmp, F_OK), 0);
	got = slurp(path, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(got, "one", 3);
	free(got);

	/* Without FSUTIL_REPLACE an existing file stays as it is. */
	assert_int_equal(fsutil_write_atomic(path, "two", 3, 0600, 0, NULL),
	    VAULT_ERR_EXISTS);
	got = slurp(path, &n);
	assert_memory_equal(got, "one", 3);
	free(got);
	assert_int_not_equal(access(tmp, F_OK), 0);

	/* With it, the new bytes replace the old whole. */
	assert_int_equal(fsutil_write_atomic(path, "three", 5, 0600,
	    FSUTIL_REPLACE, NULL), 0);
	got = slurp(path, &n);
	assert_int_equal(n, 5);
	assert_memory_equal(got, "three", 5);
	free(got);

	/* Wiped: gone, and a missing file is not an error. */
	assert_int_equal(fsutil_wipe(path), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(fsutil_wipe(path), 0);
	assert_int_equal(fsutil_sync_parent(path), 0);

	/* A directory that does not exist: an error, nothing left behind. */
	snprintf(path, sizeof(path), "%s/no/f", dir);
	assert_int_equal(fsutil_write_atomic(path, "x", 1, 0600, 0, NULL),
	    VAULT_ERR_IO);
	test_rmtree(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_atomic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
