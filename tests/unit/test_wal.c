/*
 * The LMDB store's write-ahead journal (store/wal.h): every kind of write
 * the store offers, made by a child process that journals them and dies
 * without closing the store; the parent loses LMDB's meta pages (as a power
 * cut may), recovers, and must find exactly what a store without a journal
 * holds after the same writes. Then the records' parser on damaged input.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "store/backend.h"	/* nested transactions, as the writer's */
#include "store/store.h"
#include "store/wal.h"
#include "testutil.h"

#define MAP (16u << 20)

static const uint8_t key[STORE_JOURNAL_KEY_BYTES] = { 1, 2, 3 };

static void
put(struct store_txn *txn, enum store_space sp, const char *k, const char *v)
{
	assert_int_equal(store_put(txn, sp, k, strlen(k), v, strlen(v), 0), 0);
}

/* Every kind of write, in committed and aborted nested transactions. */
static void
write_all_kinds(struct store *st, int round)
{
	struct store_txn *txn, *child;
	struct store_cursor *cur;
	struct store_val k, v;
	char name[32];

	assert_int_equal(store_write_begin(st, &txn), 0);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "r%d-k%02d", round, i);
		put(txn, STORE_ATTRS, name, "value");
		put(txn, STORE_LINEAGE, "ref", name);	/* dup: adds */
	}
	put(txn, STORE_CONSUMERS, "gone", "x");
	assert_int_equal(store_commit(txn, true), 0);

	assert_int_equal(store_write_begin(st, &txn), 0);
	/* A child that commits, one that aborts. */
	assert_int_equal(store_nested_begin(txn, &child), 0);
	snprintf(name, sizeof(name), "r%d-kept", round);
	put(child, STORE_CONSUMERS, name, "1");
	assert_int_equal(store_commit(child, false), 0);
	assert_int_equal(store_nested_begin(txn, &child), 0);
	put(child, STORE_CONSUMERS, "never", "1");
	store_abort(child);
	/* A replace and a delete through a cursor. */
	assert_int_equal(store_cursor_open(txn, STORE_ATTRS, &cur), 0);
	snprintf(name, sizeof(name), "r%d-k03", round);
	k = (struct store_val){ strlen(name), name };
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_SET), 0);
	assert_int_equal(store_cursor_replace(cur, "replaced", 8), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_NEXT), 0);
	assert_int_equal(store_cursor_del(cur), 0);
	store_cursor_close(cur);
	/* A dup value through a cursor, one by value, a whole key. */
	assert_int_equal(store_cursor_open(txn, STORE_LINEAGE, &cur), 0);
	assert_int_equal(store_cursor_get(cur, &k, &v, STORE_FIRST), 0);
	assert_int_equal(store_cursor_del(cur), 0);
	store_cursor_close(cur);
	snprintf(name, sizeof(name), "r%d-k07", round);
	assert_int_equal(store_del(txn, STORE_LINEAGE, "ref", 3, name,
	    strlen(name)), 0);
	assert_int_equal(store_del(txn, STORE_CONSUMERS, "gone", 4, NULL, 0), 0);
	/* Refused writes leave nothing in the journal either. */
	assert_int_equal(store_put(txn, STORE_ATTRS, name, strlen(name), "n", 1,
	    STORE_NOOVERWRITE), VAULT_ERR_EXISTS);
	assert_int_equal(store_del(txn, STORE_CONSUMERS, "gone", 4, NULL, 0),
	    VAULT_ERR_NOT_FOUND);
	/* A prefix. */
	snprintf(name, sizeof(name), "r%d-k1", round);
	assert_int_equal(store_delete_prefix(txn, STORE_ATTRS, name,
	    strlen(name)), 0);
	assert_int_equal(store_commit(txn, round % 2 == 0), 0);
}

/* Every entry of every space, as text, for comparing two stores. */
static char *
dump(struct store *st)
{
	struct store_txn *txn;
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);

	assert_non_null(out);
	assert_int_equal(store_read_begin(st, &txn), 0);
	for (int sp = 0; sp < STORE_SPACES; sp++) {
		struct store_cursor *cur;
		struct store_val k, v;
		int rc;

		if (sp == STORE_META)
			continue;
		assert_int_equal(store_cursor_open(txn, sp, &cur), 0);
		for (rc = store_cursor_get(cur, &k, &v, STORE_FIRST); rc == 0;
		    rc = store_cursor_get(cur, &k, &v, STORE_NEXT)) {
			assert_true(len + k.len + v.len + 16 < cap);
			len += (size_t)sprintf(out + len, "%d ", sp);
			memcpy(out + len, k.data, k.len);
			len += k.len;
			out[len++] = '=';
			memcpy(out + len, v.data, v.len);
			len += v.len;
			out[len++] = '\n';
		}
		assert_int_equal(rc, VAULT_ERR_NOT_FOUND);
		store_cursor_close(cur);
	}
	store_read_end(txn);
	out[len] = '\0';
	return out;
}

static void
lose_meta_pages(const char *dir)
{
	char path[4096];
	static const uint8_t zeros[8192];
	int fd;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, zeros, sizeof(zeros), 0), sizeof(zeros));
	close(fd);
}

static size_t
data_len(const char *dir)
{
	char path[4096];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_int_equal(stat(path, &sb), 0);
	return (size_t)sb.st_size;
}

/* The data file's bytes. */
static char *
read_data(const char *dir)
{
	char path[4096];
	size_t n = data_len(dir);
	char *buf = malloc(n);
	int fd;

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_non_null(buf);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_int_equal(pread(fd, buf, n, 0), (ssize_t)n);
	close(fd);
	return buf;
}

static bool
file_all_zero(const char *dir, const char *name)
{
	char path[4096];
	uint8_t buf[4096];
	ssize_t n;
	bool zero = true;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY)) < 0)
		return access(path, F_OK) != 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++)
			zero = zero && buf[i] == 0;
	close(fd);
	return zero;
}

static void
test_replay_restores_every_kind_of_write(void **state)
{
	char *dir = test_tmpdir(), *ref_dir = test_tmpdir(), *want, *got;
	struct store *st;
	struct store_txn *txn;
	char path[4096];
	pid_t pid;
	int status;

	(void)state;
	/* The same writes on a store without a journal: what must come back. */
	assert_int_equal(store_open(&st, ref_dir, MAP), 0);
	for (int round = 0; round < 3; round++)
		write_all_kinds(st, round);
	want = dump(st);
	store_close(st);

	if ((pid = fork()) == 0) {
		if (store_open(&st, dir, MAP) != 0 ||
		    store_journal_start(st, key) != 0)
			_exit(1);
		for (int round = 0; round < 3; round++)
			write_all_kinds(st, round);
		_exit(0);		/* no close: what a crash leaves */
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/*
	 * Another process opening it shared (a reader beside a running vaultd)
	 * reads it as it is, writes nothing, recovers nothing.
	 */
	{
		char *before = read_data(dir), *after;

		assert_int_equal(store_open_shared(&st, dir, MAP), 0);
		assert_true(store_journal_foreign(st));
		assert_false(store_journal_pending(st));
		/* A write that changes nothing goes; one that does, not. */
		assert_int_equal(store_write_begin(st, &txn), 0);
		assert_int_equal(store_write_commit(txn), 0);
		assert_int_equal(store_write_begin(st, &txn), 0);
		put(txn, STORE_CONSUMERS, "foreign", "1");
		assert_int_equal(store_write_commit(txn), VAULT_ERR_STATE);
		assert_int_equal(store_journal_start(st, key), VAULT_ERR_STATE);
		store_close(st);
		after = read_data(dir);
		assert_memory_equal(before, after, data_len(dir));
		free(before);
		free(after);
	}
	lose_meta_pages(dir);

	assert_int_equal(store_open(&st, dir, MAP), 0);
	assert_true(store_journal_pending(st));
	/* Until the replay, no write. */
	assert_int_equal(store_write_begin(st, &txn), VAULT_ERR_STATE);
	/* Records under another key are refused, and nothing is applied. */
	{
		uint8_t wrong[STORE_JOURNAL_KEY_BYTES] = { 9 };

		assert_int_equal(store_journal_replay(st, wrong), VAULT_ERR_STATE);
		assert_true(store_journal_pending(st));
	}
	assert_int_equal(store_journal_replay(st, key), 0);
	assert_false(store_journal_pending(st));
	got = dump(st);
	assert_string_equal(got, want);
	snprintf(path, sizeof(path), "%s/wal.ckpt", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_true(file_all_zero(dir, "wal.0"));
	assert_true(file_all_zero(dir, "wal.1"));
	/* It goes on: a journal again, closed cleanly. */
	assert_int_equal(store_journal_start(st, key), 0);
	write_all_kinds(st, 7);
	store_close(st);
	assert_int_not_equal(access(path, F_OK), 0);
	free(got);
	free(want);
	test_rmtree(dir);
	test_rmtree(ref_dir);
	free(dir);
	free(ref_dir);
}

/* ------------------------------------------------------------ the parser */

static int
count_rec(const struct wal_rec *rec, void *arg)
{
	(void)rec;
	(*(int *)arg)++;
	return 0;
}

/* A segment of n records of one op each, under key; durable ones synced. */
static size_t
make_segment(uint8_t *buf, size_t cap, int n, bool durable)
{
	size_t off = 0;

	memset(buf, 0, cap);
	for (int i = 0; i < n; i++) {
		struct wal_buf b = { 0 };
		crypto_generichash_state st;

		assert_int_equal(wal_buf_op(&b, WAL_PUT, STORE_ATTRS, "k", 1, "v", 1),
		    0);
		store_put_u32(buf + off, 0x5657414cu);
		store_put_u32(buf + off + 4, (uint32_t)b.len |
		    (durable ? 0x80000000u : 0));
		store_put_u64(buf + off + 8, (uint64_t)i + 1);
		memcpy(buf + off + 16, b.p, b.len);
		crypto_generichash_init(&st, key, sizeof(key), 32);
		crypto_generichash_update(&st, (const uint8_t *)
		    "vaultd store journal v1", 23);
		crypto_generichash_update(&st, buf + off, 16 + b.len);
		crypto_generichash_final(&st, buf + off + 16 + b.len, 32);
		off += 16 + b.len + 32;
		free(b.p);
	}
	return off;
}

static void
test_parse_torn_and_damaged(void **state)
{
	uint8_t seg[4096];
	const char *why;
	size_t end, used;
	bool torn;
	int n;

	(void)state;
	used = make_segment(seg, sizeof(seg), 3, true);
	n = 0;
	assert_int_equal(wal_parse(seg, sizeof(seg), key, count_rec, &n, &end,
	    &torn, &why), 0);
	assert_int_equal(n, 3);
	assert_int_equal(end, used);
	assert_false(torn);

	/* The last record cut short: dropped, not an error. */
	memset(seg + used - 20, 0, 20);
	n = 0;
	assert_int_equal(wal_parse(seg, sizeof(seg), key, count_rec, &n, &end,
	    &torn, &why), 0);
	assert_int_equal(n, 2);
	assert_true(torn);

	/* A changed byte in the first, synced ones after it: damage. */
	used = make_segment(seg, sizeof(seg), 3, true);
	seg[18] ^= 1;
	n = 0;
	assert_int_equal(wal_parse(seg, sizeof(seg), key, count_rec, &n, &end,
	    &torn, &why), VAULT_ERR_STATE);
	assert_int_equal(n, 0);
	assert_int_equal(end, 0);
	assert_non_null(why);

	/*
	 * The same with lazy records after it (never synced: the kernel may
	 * have written the later pages first): torn, the rest dropped.
	 */
	used = make_segment(seg, sizeof(seg), 3, false);
	seg[18] ^= 1;
	n = 0;
	assert_int_equal(wal_parse(seg, sizeof(seg), key, count_rec, &n, &end,
	    &torn, &why), 0);
	assert_int_equal(n, 0);
	assert_true(torn);

	/* A malformed body is refused by the op walker. */
	{
		static const uint8_t bad[] = { 1, 0, 0, 9, 0, 0, 0, 0, 'k' };

		assert_int_equal(wal_body_ops(bad, sizeof(bad), NULL, NULL),
		    VAULT_ERR_STATE);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_restores_every_kind_of_write),
		cmocka_unit_test(test_parse_torn_and_damaged),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
