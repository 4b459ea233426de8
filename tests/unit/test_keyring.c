#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/keyring.h"
#include "testutil.h"

struct fx {
	char *dir;
	char keys[1024], db[1024], key1[2048];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_int_equal(crypto_init(), 0);
	f->dir = test_tmpdir();
	snprintf(f->keys, sizeof(f->keys), "%s/keys", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
	snprintf(f->key1, sizeof(f->key1), "%s/master-1.key", f->keys);
	mkdir(f->keys, 0700);
	mkdir(f->db, 0700);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct store *
open_store(struct fx *f)
{
	struct store *st = NULL;

	assert_int_equal(store_open(&st, f->db, 16 << 20), 0);
	return st;
}

static void
test_key_file_permissions(void **state)
{
	struct fx *f = *state;
	uint8_t *key = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	struct stat sb;

	assert_int_equal(keyring_create_key_file(f->key1), 0);
	assert_int_equal(stat(f->key1, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(keyring_read_key_file(f->key1, key), 0);
	chmod(f->key1, 0640);
	assert_int_equal(keyring_read_key_file(f->key1, key), VAULT_ERR_KEY);
	chmod(f->key1, 0604);
	assert_int_equal(keyring_read_key_file(f->key1, key), VAULT_ERR_KEY);
	chmod(f->key1, 0400);
	assert_int_equal(keyring_read_key_file(f->key1, key), 0);
	/* It must not overwrite an existing key. */
	assert_int_not_equal(keyring_create_key_file(f->key1), 0);
	crypto_secret_free(key);
}

static void
test_key_file_size(void **state)
{
	struct fx *f = *state;
	uint8_t *key = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	char path[4200];

	snprintf(path, sizeof(path), "%s/short.key", f->keys);
	test_write_file(path, "0123456789012345678901234567890");	/* 31 */
	chmod(path, 0600);
	assert_int_equal(keyring_read_key_file(path, key), VAULT_ERR_KEY);
	test_write_file(path, "012345678901234567890123456789012");	/* 33 */
	assert_int_equal(keyring_read_key_file(path, key), VAULT_ERR_KEY);
	test_write_file(path, "01234567890123456789012345678901");	/* 32 */
	assert_int_equal(keyring_read_key_file(path, key), 0);
	assert_int_equal(keyring_read_key_file(f->keys, key), VAULT_ERR_KEY);
	crypto_secret_free(key);
}

static void
test_new_store_needs_a_key(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *kr = NULL;

	assert_int_equal(keyring_open(&kr, st, f->keys, false), VAULT_ERR_KEY);
	assert_null(kr);
	assert_int_equal(keyring_open(&kr, st, f->keys, true), 0);
	assert_int_equal(keyring_active_version(kr), 1);
	assert_non_null(keyring_master(kr, 1));
	assert_null(keyring_master(kr, 2));
	keyring_free(kr);
	store_close(st);
}

static uint8_t *
read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf;
	long n;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static void
test_wrong_master_key_refused_before_any_write(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *kr = NULL;
	uint8_t index1[CRYPTO_KEY_BYTES];
	char data[4200];
	uint8_t *before, *after;
	size_t nb, na;

	assert_int_equal(keyring_open(&kr, st, f->keys, true), 0);
	memcpy(index1, keyring_index_key(kr), sizeof(index1));
	keyring_free(kr);
	store_close(st);

	/* Reopening with the same key gives the same index key. */
	st = open_store(f);
	assert_int_equal(keyring_open(&kr, st, f->keys, false), 0);
	assert_memory_equal(index1, keyring_index_key(kr), sizeof(index1));
	keyring_free(kr);
	store_close(st);

	/* Another key under the same name is refused, and nothing changes. */
	snprintf(data, sizeof(data), "%s/data.mdb", f->db);
	before = read_all(data, &nb);
	unlink(f->key1);
	assert_int_equal(keyring_create_key_file(f->key1), 0);
	st = open_store(f);
	kr = NULL;
	assert_int_equal(keyring_open(&kr, st, f->keys, true), VAULT_ERR_KEY);
	assert_null(kr);
	store_close(st);
	after = read_all(data, &na);
	assert_int_equal(nb, na);
	assert_memory_equal(before, after, nb);
	free(before);
	free(after);

	/* A missing key file is refused as well, even with create set. */
	unlink(f->key1);
	st = open_store(f);
	assert_int_equal(keyring_open(&kr, st, f->keys, true), VAULT_ERR_KEY);
	store_close(st);
}

static void
test_key_dir_with_bad_permissions_refused(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *kr = NULL;

	assert_int_equal(keyring_create_key_file(f->key1), 0);
	chmod(f->key1, 0644);
	assert_int_equal(keyring_open(&kr, st, f->keys, true), VAULT_ERR_KEY);
	assert_null(kr);
	store_close(st);
}

static bool
exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void
activate(struct store *st, struct keyring *kr, uint32_t version, int want)
{
	struct store_txn *txn = NULL;

	assert_int_equal(store_write_begin(st, &txn), 0);
	assert_int_equal(keyring_activate_txn(kr, txn, version), want);
	if (want != 0) {
		store_write_abort(txn);
		return;
	}
	assert_int_equal(store_write_commit(txn), 0);
	keyring_set_active(kr, version);
}

/*
 * Replicas share the keys: a version one created but failed to start is
 * forgotten by it and left in place, since another replica may have loaded
 * it and be about to activate it; that one's start then finds its key.
 */
static void
test_shared_discard_leaves_the_key_for_the_others(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *a = NULL, *b = NULL;
	char key2[2048];

	snprintf(key2, sizeof(key2), "%s/master-2.key", f->keys);
	assert_int_equal(keyring_open(&a, st, f->keys, true), 0);
	assert_int_equal(keyring_open(&b, st, f->keys, false), 0);
	keyring_set_shared(a, true);
	keyring_set_shared(b, true);
	/* a creates version 2's file; b loads it for the same start. */
	assert_int_equal(keyring_load_version(a, 2, true), 0);
	assert_int_equal(keyring_load_version(b, 2, false), 0);
	/* a's start fails: it forgets the key, the file stays for b. */
	assert_int_equal(keyring_discard_version(a, 2), 0);
	assert_null(keyring_master(a, 2));
	assert_true(exists(key2));
	activate(st, b, 2, 0);
	keyring_free(b);
	keyring_free(a);
	/* After a restart version 2, now recorded, still opens. */
	assert_int_equal(keyring_open(&a, st, f->keys, false), 0);
	assert_non_null(keyring_master(a, 2));
	keyring_free(a);
	store_close(st);
}

/* Issue 11, points 9-11 at the keyring's level. */
static void
test_versions_move_forward_and_discard_only_unrecorded(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *kr = NULL;
	struct key_version *vs = NULL, kv;
	char key2[2048];
	uint32_t highest;
	struct store_txn *txn = NULL;
	size_t n;

	snprintf(key2, sizeof(key2), "%s/master-2.key", f->keys);
	assert_int_equal(keyring_open(&kr, st, f->keys, true), 0);

	/* A recorded version is never discarded: the store needs its key. */
	assert_int_equal(keyring_discard_version(kr, 1), VAULT_ERR_STATE);
	assert_true(exists(f->key1));
	assert_non_null(keyring_master(kr, 1));

	/* A loaded, unrecorded version goes, with the file it created. */
	assert_int_equal(keyring_load_version(kr, 2, true), 0);
	assert_true(exists(key2));
	assert_int_equal(keyring_next_version(kr), 3);
	assert_int_equal(keyring_discard_version(kr, 2), 0);
	assert_false(exists(key2));
	assert_null(keyring_master(kr, 2));
	assert_int_equal(keyring_next_version(kr), 2);

	/* It can be loaded again; only a newer version activates. */
	assert_int_equal(keyring_load_version(kr, 2, true), 0);
	assert_non_null(keyring_master(kr, 2));
	activate(st, kr, 1, VAULT_ERR_STATE);
	activate(st, kr, 2, 0);
	activate(st, kr, 1, VAULT_ERR_STATE);
	assert_int_equal(keyring_discard_version(kr, 2), VAULT_ERR_STATE);
	assert_true(exists(key2));

	/* Past 64 versions, every one is listed. */
	for (uint32_t v = 3; v <= 100; v++) {
		assert_int_equal(keyring_load_version(kr, v, true), 0);
		activate(st, kr, v, 0);
	}
	assert_int_equal(store_read_begin(st, &txn), 0);
	assert_int_equal(keyring_highest_txn(txn, &highest), 0);
	assert_int_equal(highest, 100);
	assert_int_equal(keyring_versions(kr, txn, &vs, &n), 0);
	assert_int_equal(n, 100);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(vs[i].version, i + 1);
	assert_int_equal(keyring_version_get(kr, txn, 100, &kv), 0);
	assert_int_equal(kv.version, 100);
	assert_false(kv.destroyed);
	assert_int_equal(keyring_version_get(kr, txn, 101, &kv), VAULT_ERR_NOT_FOUND);
	store_read_end(txn);
	free(vs);
	keyring_free(kr);

	/* After a restart, the store's versions count, not just the files. */
	assert_int_equal(keyring_open(&kr, st, f->keys, false), 0);
	assert_int_equal(keyring_next_version(kr), 101);
	assert_int_equal(keyring_active_version(kr), 100);
	keyring_free(kr);
	store_close(st);
}

static void
destroy(struct store *st, struct keyring *kr, uint32_t version)
{
	struct store_txn *txn = NULL;
	bool already;

	assert_int_equal(store_write_begin(st, &txn), 0);
	assert_int_equal(keyring_destroy_begin_txn(kr, txn, version, &already), 0);
	assert_int_equal(store_write_commit(txn), 0);
	assert_int_equal(keyring_forget(kr, version), 0);
	assert_int_equal(store_write_begin(st, &txn), 0);
	assert_int_equal(keyring_destroy_txn(kr, txn, version, 1), 0);
	assert_int_equal(store_write_commit(txn), 0);
	/*
	 * The janitor's tick and a DestroyMasterKey call may both finish one
	 * destruction: the second finds it done, which is no error.
	 */
	assert_int_equal(store_write_begin(st, &txn), 0);
	assert_int_equal(keyring_destroy_txn(kr, txn, version, 2), 0);
	assert_int_equal(store_write_commit(txn), 0);
}

/*
 * Two keyrings on one store and one keys directory, as two replicas: what
 * one activates or destroys, the other takes up at its next refresh.
 */
static void
test_refresh_follows_another_replica(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *a = NULL, *b = NULL;
	struct store_txn *txn = NULL;
	const uint8_t *key;
	uint32_t active;

	assert_int_equal(keyring_open(&a, st, f->keys, true), 0);
	assert_int_equal(keyring_open(&b, st, f->keys, false), 0);
	/* Nothing changed: nothing to do. */
	assert_int_equal(keyring_refresh(b), 0);
	assert_int_equal(keyring_active_version(b), 1);

	/* a rotates to 2: b loads it and makes it active. */
	assert_int_equal(keyring_load_version(a, 2, true), 0);
	activate(st, a, 2, 0);
	assert_int_equal(keyring_active_version(b), 1);
	assert_null(keyring_master(b, 2));
	assert_int_equal(keyring_next_version(b), 2);
	assert_int_equal(keyring_refresh(b), 0);
	assert_int_equal(keyring_active_version(b), 2);
	assert_non_null(keyring_master(b, 2));
	assert_int_equal(sodium_memcmp(keyring_master(a, 2), keyring_master(b, 2),
	    32), 0);
	assert_int_equal(keyring_next_version(b), 3);

	/* a destroys 1: b wipes it from memory. */
	assert_non_null(keyring_master(b, 1));
	destroy(st, a, 1);
	assert_int_equal(keyring_refresh(b), 0);
	assert_null(keyring_master(b, 1));
	assert_int_equal(store_read_begin(st, &txn), 0);
	assert_int_equal(keyring_master_load(b, txn, 1, &key), 0);
	assert_null(key);
	assert_int_equal(keyring_active_txn(txn, &active), 0);
	assert_int_equal(active, 2);
	store_read_end(txn);

	/* a version b never saw is loaded on first use, if the store has it live. */
	assert_int_equal(keyring_load_version(a, 3, true), 0);
	activate(st, a, 3, 0);
	assert_null(keyring_master(b, 3));
	/* Within the caller's transaction, which sees 3 live. */
	assert_int_equal(store_read_begin(st, &txn), 0);
	assert_int_equal(keyring_master_load(b, txn, 3, &key), 0);
	assert_non_null(key);
	assert_int_equal(keyring_master_load(b, txn, 4, &key), 0);
	assert_null(key);
	store_read_end(txn);

	/* A wrong key file for the store's active version fails the refresh. */
	assert_int_equal(keyring_load_version(a, 4, true), 0);
	activate(st, a, 4, 0);
	{
		char key4[2048];

		snprintf(key4, sizeof(key4), "%s/master-4.key", f->keys);
		assert_int_equal(unlink(key4), 0);
		assert_int_equal(keyring_create_key_file(key4), 0);
	}
	assert_int_equal(keyring_refresh(b), VAULT_ERR_KEY);
	assert_int_equal(keyring_active_version(b), 2);	/* not moved */
	assert_null(keyring_master(b, 4));
	keyring_free(b);
	keyring_free(a);
	store_close(st);
}

/*
 * A read whose snapshot predates what the keyring has seen loads nothing:
 * there a version another replica has destroyed since still looks live.
 */
static void
test_old_snapshot_loads_no_version(void **state)
{
	struct fx *f = *state;
	struct store *st = open_store(f);
	struct keyring *a = NULL, *b = NULL;
	struct store_txn *old = NULL;
	const uint8_t *key;

	assert_int_equal(keyring_open(&a, st, f->keys, true), 0);
	assert_int_equal(keyring_open(&b, st, f->keys, false), 0);
	assert_int_equal(keyring_load_version(a, 2, true), 0);
	activate(st, a, 2, 0);
	/* 2 is live here; b has not loaded it. */
	assert_int_equal(store_read_begin(st, &old), 0);
	assert_int_equal(keyring_load_version(a, 3, true), 0);
	activate(st, a, 3, 0);
	destroy(st, a, 2);
	assert_int_equal(keyring_refresh(b), 0);
	assert_null(keyring_master(b, 2));
	assert_int_equal(keyring_master_load(b, old, 2, &key),
	    VAULT_ERR_UNAVAILABLE);
	assert_null(key);
	store_read_end(old);
	keyring_free(b);
	keyring_free(a);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_file_permissions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_store_needs_a_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_master_key_refused_before_any_write,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_dir_with_bad_permissions_refused,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_versions_move_forward_and_discard_only_unrecorded, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_shared_discard_leaves_the_key_for_the_others, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_refresh_follows_another_replica,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_snapshot_loads_no_version,
		    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
