/*
 * The reflection index over the descriptor set built into vaultd: files by
 * name, symbols of every kind by full name, a file's imports, and malformed
 * sets (cut short, corrupted) refused without reading past their end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/reflect_index.h"

extern const unsigned char reflect_descriptor_set[];
extern const size_t reflect_descriptor_set_len;

static struct reflect_index *
load(void)
{
	struct reflect_index *ix;

	assert_int_equal(reflect_index_load(&ix, reflect_descriptor_set,
	    reflect_descriptor_set_len), 0);
	return ix;
}

static void
test_files_by_name(void **state)
{
	struct reflect_index *ix = load();

	(void)state;
	assert_int_equal(reflect_n_files(ix), 5);
	assert_true(reflect_file_by_name(ix, "vault/v1/vault.proto") >= 0);
	assert_true(reflect_file_by_name(ix, "vault/v1/admin.proto") >= 0);
	assert_true(reflect_file_by_name(ix, "grpc/health/v1/health.proto") >= 0);
	assert_true(reflect_file_by_name(ix,
	    "grpc/reflection/v1/reflection.proto") >= 0);
	assert_int_equal(reflect_file_by_name(ix, "vault/v1/nope.proto"), -1);
	assert_int_equal(reflect_file_by_name(ix, ""), -1);
	reflect_index_free(ix);
}

static void
expect_symbol(struct reflect_index *ix, const char *sym, const char *file,
    enum reflect_kind kind)
{
	enum reflect_kind k;
	int f = reflect_file_by_symbol(ix, sym, &k);

	assert_int_equal(f, reflect_file_by_name(ix, file));
	assert_int_equal(k, kind);
}

static void
test_symbols_of_every_kind(void **state)
{
	struct reflect_index *ix = load();
	const char *v = "vault/v1/vault.proto";

	(void)state;
	expect_symbol(ix, "vault.v1.Keys", v, REFLECT_SERVICE);
	expect_symbol(ix, "vault.v1.Admin.Backup", "vault/v1/admin.proto",
	    REFLECT_METHOD);
	expect_symbol(ix, "vault.v1.Keys.GetKeyStatus", v, REFLECT_METHOD);
	expect_symbol(ix, "vault.v1.PutAttributesRequest", v, REFLECT_MESSAGE);
	expect_symbol(ix, "vault.v1.PutAttributesRequest.consumer_id", v,
	    REFLECT_FIELD);
	expect_symbol(ix, "vault.v1.FlagChange", v, REFLECT_ENUM);
	expect_symbol(ix, "grpc.health.v1.Health.Watch",
	    "grpc/health/v1/health.proto", REFLECT_METHOD);
	/* A nested enum, and an enum value in its enclosing scope. */
	expect_symbol(ix, "grpc.health.v1.HealthCheckResponse.ServingStatus",
	    "grpc/health/v1/health.proto", REFLECT_ENUM);
	expect_symbol(ix, "grpc.health.v1.HealthCheckResponse.SERVING",
	    "grpc/health/v1/health.proto", REFLECT_ENUM_VALUE);
	expect_symbol(ix, "grpc.reflection.v1alpha.ServerReflection",
	    "grpc/reflection/v1alpha/reflection.proto", REFLECT_SERVICE);
	assert_int_equal(reflect_file_by_symbol(ix, "vault.v1", NULL), -1);
	assert_int_equal(reflect_file_by_symbol(ix, "vault.v1.Keys.", NULL), -1);
	assert_int_equal(reflect_file_by_symbol(ix, ".vault.v1.Keys", NULL), -1);
	reflect_index_free(ix);
}

static void
test_closure_lists_each_file_once(void **state)
{
	struct reflect_index *ix = load();
	int files[8];
	int f = reflect_file_by_name(ix, "vault/v1/vault.proto");
	const uint8_t *data;
	size_t len;

	(void)state;
	assert_int_equal(reflect_closure(ix, f, files, 8), 1);
	assert_int_equal(files[0], f);
	reflect_file_bytes(ix, f, &data, &len);
	assert_true(len > 100);
	assert_true(data > reflect_descriptor_set &&
	    data + len <= reflect_descriptor_set + reflect_descriptor_set_len);
	assert_int_equal(reflect_closure(ix, -1, files, 8), 0);
	assert_int_equal(reflect_closure(ix, f, files, 0), 0);
	reflect_index_free(ix);
}

/* Every cut of the set is refused or indexed, never read past its end. */
static void
test_truncated_sets(void **state)
{
	size_t n = reflect_descriptor_set_len;

	(void)state;
	for (size_t len = 0; len < n; len += len < 512 ? 1 : 97) {
		/* A heap copy of exactly len bytes, for ASan to see overreads. */
		uint8_t *copy = malloc(len ? len : 1);
		struct reflect_index *ix = NULL;
		int r;

		memcpy(copy, reflect_descriptor_set, len);
		r = reflect_index_load(&ix, copy, len);
		assert_true(r == 0 || r == VAULT_ERR_CONFIG);
		assert_true((r == 0) == (ix != NULL));
		reflect_index_free(ix);
		free(copy);
	}
}

static void
test_corrupted_sets(void **state)
{
	size_t n = reflect_descriptor_set_len;
	uint8_t *copy = malloc(n);

	(void)state;
	for (size_t i = 0; i < n; i += 7) {
		struct reflect_index *ix = NULL;
		int r;

		memcpy(copy, reflect_descriptor_set, n);
		copy[i] ^= 0xff;
		r = reflect_index_load(&ix, copy, n);
		assert_true(r == 0 || r == VAULT_ERR_CONFIG || r == VAULT_ERR_NOMEM);
		reflect_index_free(ix);
	}
	free(copy);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files_by_name),
		cmocka_unit_test(test_symbols_of_every_kind),
		cmocka_unit_test(test_closure_lists_each_file_once),
		cmocka_unit_test(test_truncated_sets),
		cmocka_unit_test(test_corrupted_sets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
