/*
 * The storage interface's contract (store.h), through the interface only:
 * what a second backend must pass too. Ordering, dup spaces, the error
 * mapping, cursors, snapshots, the meta table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/meta.h"
#include "store/store.h"
#include "testutil.h"

struct fx {
	char *dir;
	struct store *st;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = test_tmpdir();
	assert_int_equal(store_open(&f->st, f->dir, 16 << 20), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void
put(struct store_txn *txn, enum store_space sp, const char *k, const char *v)
{
	assert_int_equal(store_put(txn, sp, k, strlen(k), v, strlen(v), 0), 0);
}

static void
assert_val(const struct store_val *v, const char *want)
{
	assert_int_equal(v->len, strlen(want));
	assert_memory_equal(v->data, want, v->len);
}

static void
test_get_put_del(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_val v;
	size_t n;

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	assert_true(store_txn_store(txn) == f->st);
	assert_int_equal(store_get(txn, STORE_ATTRS, "a", 1, &v),
	    VAULT_ERR_NOT_FOUND);
	put(txn, STORE_ATTRS, "a", "1");
	put(txn, STORE_ATTRS, "a", "2");	/* replaces */
	assert_int_equal(store_get(txn, STORE_ATTRS, "a", 1, &v), 0);
	assert_val(&v, "2");
	assert_int_equal(store_put(txn, STORE_ATTRS, "a", 1, "3", 1,
	    STORE_NOOVERWRITE), VAULT_ERR_EXISTS);
	/* Spaces are apart: the same key elsewhere is another entry. */
	assert_int_equal(store_get(txn, STORE_GC, "a", 1, &v),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(store_count(txn, STORE_ATTRS, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_del(txn, STORE_ATTRS, "a", 1, NULL, 0), 0);
	assert_int_equal(store_del(txn, STORE_ATTRS, "a", 1, NULL, 0),
	    VAULT_ERR_NOT_FOUND);
	/* A log's appends: in order, then one out of order. */
	assert_int_equal(store_put(txn, STORE_AUDIT, "1", 1, "x", 1,
	    STORE_APPEND), 0);
	assert_int_equal(store_put(txn, STORE_AUDIT, "2", 1, "x", 1,
	    STORE_APPEND), 0);
	assert_int_equal(store_put(txn, STORE_AUDIT, "0", 1, "x", 1,
	    STORE_APPEND), VAULT_ERR_STORE);
	assert_int_equal(store_write_commit(txn), 0);
}

static void
test_order_and_cursor(void **state)
{
	static const char *const want[] = { "a", "ab", "b", "b\x01", "c" };
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_cursor *cur;
	struct store_val k, v;
	size_t i = 0;
	int rc;

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	/* Put out of order: they come back bytewise. */
	put(txn, STORE_REQUESTS, "c", "5");
	put(txn, STORE_REQUESTS, "b\x01", "4");
	put(txn, STORE_REQUESTS, "a", "1");
	put(txn, STORE_REQUESTS, "b", "3");
	put(txn, STORE_REQUESTS, "ab", "2");
	assert_int_equal(store_cursor_open(txn, STORE_REQUESTS, &cur), 0);
	for (rc = store_cursor_get(cur, &k, &v, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_NEXT))
		assert_val(&k, want[i++]);
	assert_int_equal(rc, VAULT_ERR_NOT_FOUND);
	assert_int_equal(i, 5);
	/* Seek: the first key >= the one given. */
	k = (struct store_val){ 2, "aa" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SEEK), 0);
	assert_val(&k, "ab");
	assert_val(&v, "2");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_PREV), 0);
	assert_val(&k, "a");
	k = (struct store_val){ 1, "d" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SEEK),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_LAST), 0);
	assert_val(&k, "c");
	k = (struct store_val){ 1, "b" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SET), 0);
	assert_val(&v, "3");
	/* Replace and delete at the cursor. */
	assert_int_equal(store_cursor_replace(cur, "three", 5), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_CURRENT), 0);
	assert_val(&k, "b");
	assert_val(&v, "three");
	assert_int_equal(store_cursor_del(cur), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_CURRENT), 0);
	assert_val(&k, "b\x01");
	k = (struct store_val){ 1, "c" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SET), 0);
	assert_int_equal(store_cursor_del(cur), 0);
	/* Deleted the last: no current entry. */
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_CURRENT),
	    VAULT_ERR_NOT_FOUND);
	store_cursor_close(cur);
	/*
	 * After a delete, the cursor stands on the entry that followed:
	 * STORE_NEXT reads that one, it does not skip it (a walk that deletes
	 * as it goes visits every entry). A replace leaves the cursor where it
	 * is. A cursor stays on its entry across writes to other spaces.
	 */
	put(txn, STORE_GC, "x", "1");
	put(txn, STORE_GC, "y", "2");
	put(txn, STORE_GC, "z", "3");
	assert_int_equal(store_cursor_open(txn, STORE_GC, &cur), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_FIRST), 0);
	assert_int_equal(store_cursor_del(cur), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT), 0);
	assert_val(&k, "y");
	assert_int_equal(store_cursor_replace(cur, "two", 3), 0);
	put(txn, STORE_COUNTS, "other", "space");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_CURRENT), 0);
	assert_val(&k, "y");
	assert_val(&v, "two");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT), 0);
	assert_val(&k, "z");
	store_cursor_close(cur);
	/* Prefix delete takes "a" and "ab", nothing else. */
	assert_int_equal(store_delete_prefix(txn, STORE_REQUESTS, "a", 1), 0);
	assert_int_equal(store_count(txn, STORE_REQUESTS, &i), 0);
	assert_int_equal(i, 1);
	store_write_abort(txn);
}

static void
test_dup_space(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_cursor *cur;
	struct store_val k, v;
	size_t n;

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	put(txn, STORE_LINEAGE, "r", "2");
	put(txn, STORE_LINEAGE, "r", "1");
	put(txn, STORE_LINEAGE, "r", "3");
	put(txn, STORE_LINEAGE, "s", "1");
	assert_int_equal(store_put(txn, STORE_LINEAGE, "r", 1, "2", 1,
	    STORE_NODUPDATA), VAULT_ERR_EXISTS);
	assert_int_equal(store_count(txn, STORE_LINEAGE, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(store_get(txn, STORE_LINEAGE, "r", 1, &v), 0);
	assert_val(&v, "1");		/* the first value */
	assert_int_equal(store_cursor_open(txn, STORE_LINEAGE, &cur), 0);
	k = (struct store_val){ 1, "r" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SET), 0);
	assert_val(&v, "1");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT_DUP), 0);
	assert_val(&v, "2");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT_DUP), 0);
	assert_val(&v, "3");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT_DUP),
	    VAULT_ERR_NOT_FOUND);
	k = (struct store_val){ 1, "r" };
	v = (struct store_val){ 1, "2" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_GET_BOTH), 0);
	v = (struct store_val){ 1, "4" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_GET_BOTH),
	    VAULT_ERR_NOT_FOUND);
	k = (struct store_val){ 1, "r" };
	v = (struct store_val){ 2, "20" };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SEEK_DUP), 0);
	assert_val(&v, "3");
	store_cursor_close(cur);
	/* One value, then all of a key. */
	assert_int_equal(store_del(txn, STORE_LINEAGE, "r", 1, "2", 1), 0);
	assert_int_equal(store_count(txn, STORE_LINEAGE, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(store_del(txn, STORE_LINEAGE, "r", 1, NULL, 0), 0);
	assert_int_equal(store_count(txn, STORE_LINEAGE, &n), 0);
	assert_int_equal(n, 1);
	store_write_abort(txn);
}

static void
test_snapshot(void **state)
{
	struct fx *f = *state;
	struct store_txn *rd, *wr;
	struct store_val v;

	assert_int_equal(store_read_begin(f->st, &rd), 0);
	assert_int_equal(store_write_begin(f->st, &wr), 0);
	put(wr, STORE_GC, "k", "v");
	assert_int_equal(store_write_commit(wr), 0);
	/* The reader's snapshot predates the commit. */
	assert_int_equal(store_get(rd, STORE_GC, "k", 1, &v),
	    VAULT_ERR_NOT_FOUND);
	store_read_end(rd);
	assert_int_equal(store_read_begin(f->st, &rd), 0);
	assert_int_equal(store_get(rd, STORE_GC, "k", 1, &v), 0);
	assert_val(&v, "v");
	store_read_end(rd);
	store_read_end(NULL);
	store_write_abort(NULL);
	store_cursor_close(NULL);
}

static void
test_meta(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_val v;
	uint8_t key[META_KEY_MAX];
	uint64_t u;

	/* The bytes of each key on disk (test_golden pins them in place). */
	assert_int_equal(meta_key_bytes(META_PENDING, 12, key), 10);
	assert_memory_equal(key, "pending/12", 10);
	assert_int_equal(meta_key_bytes(META_KEY_VERSION, 1, key), 7);
	assert_memory_equal(key, "kv/\0\0\0\1", 7);
	assert_int_equal(meta_key_bytes(META_AUDIT_JOURNAL_SEQ, 0, key), 17);
	assert_memory_equal(key, "audit_journal_seq", 17);
	for (int k = 0; k < META_KEYS; k++)
		assert_true(meta_name(k) != NULL && meta_name(k)[0] != '\0');
	assert_int_equal(meta_key_bytes(META_KEYRING_GEN, 0, key), 11);
	assert_memory_equal(key, "keyring_gen", 11);
	assert_int_equal(meta_key_bytes(META_LEASE_MAINTENANCE, 0, key), 17);
	assert_memory_equal(key, "lease/maintenance", 17);

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	/* store_open wrote the format version. */
	assert_int_equal(meta_get(txn, META_STORE_FORMAT, 0, &v), 0);
	assert_int_equal(store_get_u32(v.data), STORE_FORMAT_VERSION);
	assert_int_equal(meta_get_u64(txn, META_LEDGER_NEXT, 0, &u),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(u, 0);
	assert_int_equal(meta_put_u64(txn, META_LEDGER_NEXT, 0, 42), 0);
	assert_int_equal(meta_get_u64(txn, META_LEDGER_NEXT, 0, &u), 0);
	assert_int_equal(u, 42);
	assert_int_equal(store_get(txn, STORE_META, "ledger_next", 11, &v), 0);
	assert_memory_equal(v.data, "\0\0\0\0\0\0\0\x2a", 8);
	assert_int_equal(meta_put(txn, META_LEDGER_NEXT, 0, "x", 1), 0);
	assert_int_equal(meta_get_u64(txn, META_LEDGER_NEXT, 0, &u),
	    VAULT_ERR_STATE);
	assert_int_equal(meta_put_u64(txn, META_PENDING, 3, 1), 0);
	assert_int_equal(store_get(txn, STORE_META, "pending/3", 9, &v), 0);
	assert_int_equal(meta_del(txn, META_PENDING, 3), 0);
	assert_int_equal(meta_del(txn, META_PENDING, 3), 0);	/* absent: fine */
	assert_int_equal(meta_get_u64_named(txn, META_JOURNAL_SEQ_OF, "r-1", &u),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(meta_put_u64_named(txn, META_JOURNAL_SEQ_OF, "r-1", 7), 0);
	assert_int_equal(store_get(txn, STORE_META, "journal_seq/r-1", 15, &v), 0);
	assert_memory_equal(v.data, "\0\0\0\0\0\0\0\x07", 8);
	assert_int_equal(meta_get_u64_named(txn, META_JOURNAL_SEQ_OF, "r-1", &u), 0);
	assert_int_equal(u, 7);
	store_write_abort(txn);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_put_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_and_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dup_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
