/*
 * The storage interface's contract (store.h), through the interface only:
 * what every backend must pass. Ordering, dup spaces, the error mapping,
 * cursors, snapshots, the meta table. Each test runs on LMDB, and on
 * PostgreSQL when VAULT_TEST_PG_CONNINFO names a server (testpg.h), each
 * in a fresh database; then the tests of what only PostgreSQL has follow
 * (replicas on one database, reconnection, the reader pool).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/backend.h"	/* nested transactions, as the writer's */
#include "store/meta.h"
#include "store/store.h"
#include "testpg.h"
#include "testutil.h"

struct fx {
	char *dir;			/* LMDB */
	struct testpg_db db;		/* PostgreSQL */
	bool pg;
	struct store *st;
};

static int
setup_lmdb(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = test_tmpdir();
	assert_int_equal(store_open(&f->st, f->dir, 16 << 20), 0);
	*state = f;
	return 0;
}

static int
setup_pg(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct store_params p;

	f->pg = true;
	testpg_create(&f->db);
	p = testpg_params(&f->db);
	assert_int_equal(store_open_pg(&f->st, &p), 0);
	assert_string_equal(store_backend_name(f->st), "postgresql");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	if (f->pg)
		testpg_drop(&f->db);
	else
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
	/* Without the flag a pair already there is left as it is. */
	assert_int_equal(store_put(txn, STORE_LINEAGE, "r", 1, "2", 1, 0), 0);
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

/* ---------------------------------------------------- order, long walks */

struct rkey {
	uint8_t b[8];
	size_t len;
	bool gone;		/* deleted by a prefix */
};

/* memcmp, a shorter key before its extensions: the contract's order. */
static int
rkey_cmp(const void *pa, const void *pb)
{
	const struct rkey *a = pa, *b = pb;
	int c = memcmp(a->b, b->b, a->len < b->len ? a->len : b->len);

	return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
}

/* Keys from bytes that trip signed or text comparisons, many prefixes. */
static size_t
random_keys(struct rkey *keys, size_t n)
{
	static const uint8_t alphabet[] = { 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff };
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		keys[i].len = 1 + (size_t)(rand() % 6);
		keys[i].gone = false;
		for (size_t j = 0; j < keys[i].len; j++)
			keys[i].b[j] = alphabet[rand() % sizeof(alphabet)];
	}
	qsort(keys, n, sizeof(*keys), rkey_cmp);
	for (size_t i = 0; i < n; i++)		/* unique */
		if (m == 0 || rkey_cmp(&keys[m - 1], &keys[i]) != 0)
			keys[m++] = keys[i];
	return m;
}

static size_t
with_prefix(const struct rkey *keys, size_t n, const char *p, size_t plen)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += !keys[i].gone && keys[i].len >= plen &&
		    memcmp(keys[i].b, p, plen) == 0;
	return c;
}

/*
 * Random keys come back in memcmp order, forwards and backwards, and a
 * prefix delete takes exactly its keys, 0xff prefixes included (the
 * successor of "\x01\xff" is "\x02").
 */
static void
test_bytewise_order(void **state)
{
	static const struct { const char *p; size_t len; } prefixes[] = {
		{ "\xff", 1 }, { "\x01\xff", 2 }, { "\x00", 1 }, { "\xff\xff", 2 },
	};
	struct fx *f = *state;
	struct rkey keys[600];
	struct store_txn *txn;
	struct store_cursor *cur;
	struct store_val k, v;
	size_t n, i, left;
	int rc;

	srand(15);
	n = random_keys(keys, 600);
	assert_int_equal(store_write_begin(f->st, &txn), 0);
	for (i = n; i-- > 0;)		/* backwards: the store sorts */
		assert_int_equal(store_put(txn, STORE_COUNTS, keys[i].b,
		    keys[i].len, &i, sizeof(i), 0), 0);
	assert_int_equal(store_write_commit(txn), 0);

	assert_int_equal(store_read_begin(f->st, &txn), 0);
	assert_int_equal(store_cursor_open(txn, STORE_COUNTS, &cur), 0);
	for (i = 0, rc = store_cursor_get(cur, &k, &v, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_NEXT), i++) {
		assert_true(i < n);
		assert_int_equal(k.len, keys[i].len);
		assert_memory_equal(k.data, keys[i].b, k.len);
	}
	assert_int_equal(rc, VAULT_ERR_NOT_FOUND);
	assert_int_equal(i, n);
	for (i = n, rc = store_cursor_get(cur, &k, &v, STORE_LAST); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_PREV)) {
		i--;
		assert_int_equal(k.len, keys[i].len);
		assert_memory_equal(k.data, keys[i].b, k.len);
	}
	assert_int_equal(rc, VAULT_ERR_NOT_FOUND);
	assert_int_equal(i, 0);
	store_cursor_close(cur);
	store_read_end(txn);

	left = n;
	assert_int_equal(store_write_begin(f->st, &txn), 0);
	for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
		size_t gone = with_prefix(keys, n, prefixes[p].p, prefixes[p].len);

		/* Forget them in keys too, so a later prefix counts what is left. */
		assert_int_equal(store_delete_prefix(txn, STORE_COUNTS,
		    prefixes[p].p, prefixes[p].len), 0);
		for (i = 0; i < n; i++)
			keys[i].gone = keys[i].gone || (keys[i].len >=
			    prefixes[p].len && memcmp(keys[i].b, prefixes[p].p,
			    prefixes[p].len) == 0);
		left -= gone;
		assert_int_equal(store_count(txn, STORE_COUNTS, &i), 0);
		assert_int_equal(i, left);
	}
	assert_true(left > 0 && left < n);
	store_write_abort(txn);
}

/*
 * Walks longer than a backend's batch: a delete-as-you-go walk visits
 * every entry, a read walk sees the result in order, a dup key with many
 * values walks with NEXT_DUP and seeks within them.
 */
static void
test_long_walks(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_cursor *cur;
	struct store_val k, v;
	uint8_t key[4], val[4];
	size_t n = 0;
	int rc;

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		store_put_u32(key, i);
		assert_int_equal(store_put(txn, STORE_REQUESTS, key, 4, key, 4,
		    STORE_APPEND), 0);
	}
	for (uint32_t i = 0; i < 600; i++) {
		store_put_u32(val, i * 2);
		assert_int_equal(store_put(txn, STORE_LINEAGE, "r", 1, val, 4,
		    0), 0);
	}
	assert_int_equal(store_put(txn, STORE_LINEAGE, "s", 1, "x", 1, 0), 0);
	/* Delete the odd ones as the walk goes. */
	assert_int_equal(store_cursor_open(txn, STORE_REQUESTS, &cur), 0);
	for (rc = store_cursor_get(cur, &k, &v, STORE_FIRST); rc == 0;) {
		assert_int_equal(store_get_u32(k.data), n++);
		if (store_get_u32(k.data) % 2 == 1) {
			assert_int_equal(store_cursor_del(cur), 0);
			rc = store_cursor_get(cur, &k, &v, STORE_CURRENT);
		} else {
			rc = store_cursor_get(cur, &k, &v, STORE_NEXT);
		}
	}
	assert_int_equal(rc, VAULT_ERR_NOT_FOUND);
	assert_int_equal(n, 1000);
	store_cursor_close(cur);
	assert_int_equal(store_write_commit(txn), 0);

	assert_int_equal(store_read_begin(f->st, &txn), 0);
	assert_int_equal(store_cursor_open(txn, STORE_REQUESTS, &cur), 0);
	for (n = 0, rc = store_cursor_get(cur, &k, &v, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_NEXT))
		assert_int_equal(store_get_u32(v.data), 2 * n++);
	assert_int_equal(n, 500);
	store_cursor_close(cur);
	assert_int_equal(store_cursor_open(txn, STORE_LINEAGE, &cur), 0);
	k = (struct store_val){ 1, "r" };
	for (n = 0, rc = store_cursor_get(cur, &k, &v, STORE_SET); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_NEXT_DUP)) {
		assert_int_equal(k.len, 1);
		assert_int_equal(store_get_u32(v.data), 2 * n++);
	}
	assert_int_equal(rc, VAULT_ERR_NOT_FOUND);
	assert_int_equal(n, 600);
	/* NEXT goes on to the next key. */
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT), 0);
	assert_memory_equal(k.data, "s", 1);
	store_put_u32(val, 777);		/* between 776 and 778 */
	k = (struct store_val){ 1, "r" };
	v = (struct store_val){ 4, val };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SEEK_DUP), 0);
	assert_int_equal(store_get_u32(v.data), 778);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_PREV), 0);
	assert_int_equal(store_get_u32(v.data), 776);
	store_cursor_close(cur);
	store_read_end(txn);
}

/* ---------------------------------------------------- PostgreSQL only */

static struct store *
open_replica(struct fx *f)
{
	struct store_params p = testpg_params(&f->db);
	struct store *st;

	assert_int_equal(store_open_pg(&st, &p), 0);
	return st;
}

static void
put_commit(struct store *st, const char *k, const char *v)
{
	struct store_txn *txn;

	assert_int_equal(store_write_begin(st, &txn), 0);
	put(txn, STORE_GC, k, v);
	assert_int_equal(store_write_commit(txn), 0);
}

/*
 * Two store handles on one database ("replicas"): a commit of one is seen
 * by the other's next read transaction, not by one begun before it.
 */
static void
test_pg_two_replicas(void **state)
{
	struct fx *f = *state;
	struct store *b = open_replica(f);
	struct store_txn *early, *late;
	struct store_val v;
	bool exists;
	struct store_params p = testpg_params(&f->db);

	assert_int_equal(store_exists_pg(&p, &exists), 0);
	assert_true(exists);
	assert_int_equal(store_read_begin(b, &early), 0);
	put_commit(f->st, "k", "from a");
	assert_int_equal(store_get(early, STORE_GC, "k", 1, &v),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(store_read_begin(b, &late), 0);
	assert_int_equal(store_get(late, STORE_GC, "k", 1, &v), 0);
	assert_val(&v, "from a");
	store_read_end(late);
	store_read_end(early);
	/* And back: b's writer sees a's commit and replaces it. */
	put_commit(b, "k", "from b");
	assert_int_equal(store_read_begin(f->st, &late), 0);
	assert_int_equal(store_get(late, STORE_GC, "k", 1, &v), 0);
	assert_val(&v, "from b");
	store_read_end(late);
	store_close(b);
}

struct incr_arg {
	struct store *st;
	int groups;
};

/* Reads the counter, adds one, commits: a lost update shows in the sum. */
static void *
increment(void *p)
{
	struct incr_arg *a = p;

	for (int i = 0; i < a->groups; i++) {
		struct store_txn *txn;
		struct store_val v;
		uint64_t n = 0;
		uint8_t b[8];

		assert_int_equal(store_write_begin(a->st, &txn), 0);
		if (store_get(txn, STORE_META, "counter", 7, &v) == 0)
			n = store_get_u64(v.data);
		store_put_u64(b, n + 1);
		assert_int_equal(store_put(txn, STORE_META, "counter", 7, b, 8,
		    0), 0);
		assert_int_equal(store_write_commit(txn), 0);
	}
	return NULL;
}

/* Two replicas' writers serialize on the database: no lost update. */
static void
test_pg_writers_serialize(void **state)
{
	struct fx *f = *state;
	struct incr_arg a[2] = { { f->st, 200 }, { open_replica(f), 200 } };
	pthread_t th[2];
	struct store_txn *txn;
	struct store_val v;

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, increment, &a[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(store_read_begin(f->st, &txn), 0);
	assert_int_equal(store_get(txn, STORE_META, "counter", 7, &v), 0);
	assert_int_equal(store_get_u64(v.data), 400);
	store_read_end(txn);
	store_close(a[1].st);
}

/*
 * The writer's and a reader's connections killed by the server. Killed
 * while idle (a failover, a proxy's timeout): the next begin reconnects
 * and no call fails. Killed inside a transaction: that call fails
 * UNAVAILABLE (the store is not failed), the next transaction reconnects.
 */
static void
test_pg_reconnect(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_val v;

	put_commit(f->st, "k", "1");
	assert_int_equal(store_read_begin(f->st, &txn), 0);
	store_read_end(txn);
	assert_int_equal(testpg_terminate(&f->db, "vaultd-writer"), 1);
	assert_int_equal(testpg_terminate(&f->db, "vaultd-reader"), 1);
	put_commit(f->st, "k", "2");
	assert_int_equal(store_read_begin(f->st, &txn), 0);
	assert_int_equal(store_get(txn, STORE_GC, "k", 1, &v), 0);
	assert_val(&v, "2");

	assert_int_equal(testpg_terminate(&f->db, "vaultd-reader"), 1);
	assert_int_equal(store_get(txn, STORE_GC, "k", 1, &v),
	    VAULT_ERR_UNAVAILABLE);
	store_read_end(txn);
	assert_false(store_failed(f->st));
	assert_int_equal(store_write_begin(f->st, &txn), 0);
	assert_int_equal(testpg_terminate(&f->db, "vaultd-writer"), 1);
	assert_int_equal(store_put(txn, STORE_GC, "k", 1, "3", 1, 0),
	    VAULT_ERR_UNAVAILABLE);
	store_write_abort(txn);
	assert_false(store_failed(f->st));
	put_commit(f->st, "k", "4");
	assert_int_equal(store_read_begin(f->st, &txn), 0);
	assert_int_equal(store_get(txn, STORE_GC, "k", 1, &v), 0);
	assert_val(&v, "4");
	store_read_end(txn);
}

/*
 * The writers' lock held elsewhere (another replica's writer, hung): a
 * begin waits connect_timeout_s, then fails UNAVAILABLE; once released, it
 * is granted.
 */
static void
test_pg_writer_lock_wait_is_bounded(void **state)
{
	struct fx *f = *state;
	struct store_params p = testpg_params(&f->db);
	struct store *st;
	struct store_txn *txn;
	PGconn *other = PQconnectdb(f->db.conninfo);
	PGresult *res;

	p.connect_timeout_s = 1;
	assert_int_equal(store_open_pg(&st, &p), 0);
	assert_int_equal(PQstatus(other), CONNECTION_OK);
	res = PQexec(other, "BEGIN; SELECT pg_advisory_xact_lock("
	    "8530228277886089009)");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	assert_int_equal(store_write_begin(st, &txn), VAULT_ERR_UNAVAILABLE);
	assert_false(store_failed(st));
	res = PQexec(other, "COMMIT");
	PQclear(res);
	assert_int_equal(store_write_begin(st, &txn), 0);
	put(txn, STORE_GC, "k", "v");
	assert_int_equal(store_write_commit(txn), 0);
	PQfinish(other);
	store_close(st);
}

/*
 * A statement that fails inside a request's nested transaction (here a
 * trigger of the test's raises for the key "boom") fails that request
 * only: after the writer aborts it, or even after a job that ignored the
 * error commits it, the group goes on and commits the rest.
 */
static void
test_pg_failed_statement_in_nested(void **state)
{
	struct fx *f = *state;
	struct store_txn *top, *child;
	struct store_val v;

	testpg_exec(f->db.conninfo,
	    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ "
	    "BEGIN IF NEW.k = 'boom'::bytea THEN RAISE 'boom'; END IF; "
	    "RETURN NEW; END $$; CREATE TRIGGER boom BEFORE INSERT ON "
	    "vaultd.kv FOR EACH ROW EXECUTE FUNCTION boom()");
	assert_int_equal(store_write_begin(f->st, &top), 0);
	put(top, STORE_GC, "before", "1");
	/* Aborted by the writer, as a failed job's is. */
	assert_int_equal(store_nested_begin(top, &child), 0);
	assert_int_equal(store_put(child, STORE_GC, "boom", 4, "x", 1, 0),
	    VAULT_ERR_STORE);
	store_abort(child);
	/* Committed by a job that ignored the error: refused, undone. */
	assert_int_equal(store_nested_begin(top, &child), 0);
	put(child, STORE_GC, "lost", "2");
	assert_int_equal(store_put(child, STORE_GC, "boom", 4, "x", 1, 0),
	    VAULT_ERR_STORE);
	assert_int_not_equal(store_commit(child, true), 0);
	/* The group is still good. */
	assert_int_equal(store_nested_begin(top, &child), 0);
	put(child, STORE_GC, "after", "3");
	assert_int_equal(store_commit(child, true), 0);
	assert_int_equal(store_write_commit(top), 0);
	assert_int_equal(store_read_begin(f->st, &top), 0);
	assert_int_equal(store_get(top, STORE_GC, "before", 6, &v), 0);
	assert_int_equal(store_get(top, STORE_GC, "after", 5, &v), 0);
	assert_int_equal(store_get(top, STORE_GC, "lost", 4, &v),
	    VAULT_ERR_NOT_FOUND);
	assert_int_equal(store_get(top, STORE_GC, "boom", 4, &v),
	    VAULT_ERR_NOT_FOUND);
	store_read_end(top);
}

/* pool_size readers at once; one more waits, then fails VAULT_ERR_LIMIT. */
static void
test_pg_reader_limit(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn[5];

	for (int i = 0; i < 4; i++)
		assert_int_equal(store_read_begin(f->st, &txn[i]), 0);
	assert_int_equal(store_read_begin(f->st, &txn[4]), VAULT_ERR_LIMIT);
	store_read_end(txn[0]);
	assert_int_equal(store_read_begin(f->st, &txn[4]), 0);
	for (int i = 1; i < 5; i++)
		store_read_end(txn[i]);
}

/*
 * A cursor's fetched-ahead rows never outlive a write in its transaction:
 * a key put or deleted behind its back shows at its next move.
 */
static void
test_pg_cursor_not_stale(void **state)
{
	struct fx *f = *state;
	struct store_txn *txn;
	struct store_cursor *cur;
	struct store_val k, v;

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	put(txn, STORE_GC, "a", "1");
	put(txn, STORE_GC, "c", "3");
	put(txn, STORE_GC, "e", "5");
	assert_int_equal(store_cursor_open(txn, STORE_GC, &cur), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_FIRST), 0);
	put(txn, STORE_GC, "b", "2");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT), 0);
	assert_val(&k, "b");
	assert_int_equal(store_del(txn, STORE_GC, "c", 1, NULL, 0), 0);
	put(txn, STORE_GC, "e", "five");
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT), 0);
	assert_val(&k, "e");
	assert_val(&v, "five");
	store_cursor_close(cur);
	store_write_abort(txn);
}

static int saved_stderr = -1;
static FILE *captured;

/* Sends stderr (the log) to a temporary file until capture_stderr_end. */
static void
capture_stderr_begin(void)
{
	fflush(stderr);
	captured = tmpfile();
	assert_non_null(captured);
	saved_stderr = dup(2);
	assert_true(dup2(fileno(captured), 2) == 2);
}

/* Restores stderr; returns how many captured lines hold needle. */
static int
capture_stderr_end(const char *needle)
{
	char line[2048];
	int n = 0, lines = 0;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	rewind(captured);
	while (fgets(line, sizeof(line), captured) != NULL) {
		lines++;
		n += strstr(line, needle) != NULL;
	}
	fclose(captured);
	assert_true(lines > 0);		/* the failures were logged */
	return n;
}

/*
 * What exists: a fresh database holds no store; an unreachable server is
 * VAULT_ERR_UNAVAILABLE; a store of another format version is refused.
 */
static void
test_pg_exists_and_format(void **state)
{
	struct fx *f = *state;
	struct testpg_db other;
	struct store_params p;
	struct store *st;
	bool exists = true;
	char sql[256];

	testpg_create(&other);
	p = testpg_params(&other);
	assert_int_equal(store_exists_pg(&p, &exists), 0);
	assert_false(exists);
	testpg_drop(&other);

	/* Unreachable, or not even a conninfo: the log never holds the password. */
	p = (struct store_params){ .kind = STORE_KIND_POSTGRESQL,
	    .conninfo = "host=127.0.0.1 port=1 user=postgres dbname=nowhere "
	    "password=pw-6f2e91", .pool_size = 1, .connect_timeout_s = 1 };
	capture_stderr_begin();
	assert_int_equal(store_exists_pg(&p, &exists),
	    VAULT_ERR_UNAVAILABLE);
	assert_int_equal(store_open_pg(&st, &p), VAULT_ERR_UNAVAILABLE);
	/* libpq's own complaints about these two quote the password. */
	p.conninfo = "postgresql://u:pw-6f2e91%zz@127.0.0.1:1/x";
	assert_int_equal(store_open_pg(&st, &p), VAULT_ERR_CONFIG);
	p.conninfo = "postgresql://u:pw-6f2e91@[::1";
	assert_int_equal(store_open_pg(&st, &p), VAULT_ERR_CONFIG);
	assert_int_equal(capture_stderr_end("pw-6f2e91"), 0);

	/* A newer format than this vaultd's: refused. */
	snprintf(sql, sizeof(sql), "UPDATE vaultd.kv SET v = '\\x%08x' "
	    "WHERE sp = %d AND k = 'store_format'::bytea",
	    (unsigned)STORE_FORMAT_VERSION + 1, (int)STORE_META);
	testpg_exec(f->db.conninfo, sql);
	p = testpg_params(&f->db);
	assert_int_equal(store_open_pg(&st, &p), VAULT_ERR_STATE);
}

/* The whole data file of an LMDB store in dir; *len its size. */
static uint8_t *
data_file(const char *dir, size_t *len)
{
	char path[4096];
	uint8_t *buf;
	FILE *fp;
	long n;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_non_null(fp = fopen(path, "rb"));
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	assert_true((n = ftell(fp)) > 0);
	rewind(fp);
	assert_non_null(buf = malloc((size_t)n));
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/*
 * LMDB copies the page of a dup pair put again before it finds the pair
 * there: the store looks it up first, so a transaction of such puts has
 * nothing to write and its commit leaves the data file as it was (meta
 * pages included). A put of a new pair in the same place does change it.
 */
/* Commits "r" -> each of vals in one transaction; the data file after. */
static uint8_t *
put_and_read(struct fx *f, const char *const *vals, size_t n, size_t *len)
{
	struct store_txn *txn;

	assert_int_equal(store_write_begin(f->st, &txn), 0);
	for (size_t i = 0; i < n; i++)
		put(txn, STORE_LINEAGE, "r", vals[i]);
	assert_int_equal(store_write_commit(txn), 0);
	assert_int_equal(store_sync(f->st), 0);
	return data_file(f->dir, len);
}

static void
test_dup_pair_put_again_writes_nothing(void **state)
{
	static const char *const first[] = { "1", "2" }, *const again[] = {
	    "2", "1" }, *const more[] = { "3" };
	struct fx *f = *state;
	uint8_t *before, *after;
	size_t blen, alen;

	before = put_and_read(f, first, 2, &blen);
	after = put_and_read(f, again, 2, &alen);
	assert_int_equal(alen, blen);
	assert_memory_equal(after, before, blen);
	free(after);
	after = put_and_read(f, more, 1, &alen);
	assert_true(alen != blen || memcmp(after, before, blen) != 0);
	free(after);
	free(before);
}

#define STORE_TESTS(setup) \
	cmocka_unit_test_setup_teardown(test_get_put_del, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_order_and_cursor, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_dup_space, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_meta, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_bytewise_order, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_long_walks, setup, teardown)

int
main(void)
{
	const struct CMUnitTest lmdb[] = {
		STORE_TESTS(setup_lmdb),
		cmocka_unit_test_setup_teardown(
		    test_dup_pair_put_again_writes_nothing, setup_lmdb,
		    teardown),
	};
	const struct CMUnitTest pg[] = {
		STORE_TESTS(setup_pg),
		cmocka_unit_test_setup_teardown(test_pg_two_replicas, setup_pg,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pg_writers_serialize,
		    setup_pg, teardown),
		cmocka_unit_test_setup_teardown(test_pg_reconnect, setup_pg,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pg_reader_limit, setup_pg,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_pg_writer_lock_wait_is_bounded, setup_pg, teardown),
		cmocka_unit_test_setup_teardown(
		    test_pg_failed_statement_in_nested, setup_pg, teardown),
		cmocka_unit_test_setup_teardown(test_pg_cursor_not_stale,
		    setup_pg, teardown),
		cmocka_unit_test_setup_teardown(test_pg_exists_and_format,
		    setup_pg, teardown),
	};
	int failed = cmocka_run_group_tests_name("store on LMDB", lmdb, NULL,
	    NULL);

	if (testpg_conninfo() == NULL) {
		testpg_say_skipped("test_store");
		return failed;
	}
	return failed + cmocka_run_group_tests_name("store on PostgreSQL", pg,
	    NULL, NULL);
}
