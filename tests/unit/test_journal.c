/*
 * The audit journal: entries of reads reach the audit log in order, and
 * what a crash leaves in the journal files is moved in at the next open;
 * a changed or missing record stops the open.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sodium.h>

#include "audit/audit.h"
#include "audit/journal.h"
#include "audit/scan.h"
#include "store/meta.h"
#include "testutil.h"

#define HOUR_MS 3600000

static int
setup(void **state)
{
	struct test_vault *f = test_vault_new();

	assert_int_equal(journal_open(&f->v->audit.jn, &f->v->audit, f->cfg->store_dir,
	    JOURNAL_INGEST_MS, JOURNAL_INDEX_MS), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	test_vault_free(*state);
	return 0;
}

/*
 * Entries stay in the journal until synced, and out of the consumer index
 * until a scan by consumer: no timed ingest or indexing for an hour.
 */
static void
hold_entries(struct test_vault *f)
{
	journal_close(f->v->audit.jn);
	assert_int_equal(journal_open(&f->v->audit.jn, &f->v->audit, f->cfg->store_dir,
	    HOUR_MS, HOUR_MS), 0);
}

static struct audit_rec
rec_of(const char *detail, const uint8_t *ref)
{
	return (struct audit_rec){ "reader", "/vault.v1.Vault/GetAttributes",
	    ref, detail, "", "", "ok", NULL, NULL };
}

struct seen {
	size_t n;
	char detail[16][64];
	uint64_t seq[16];
};

static int
collect(const struct audit_entry *e, void *arg)
{
	struct seen *s = arg;

	if (strncmp(e->detail, "j", 1) == 0 && s->n < 16) {
		snprintf(s->detail[s->n], sizeof(s->detail[0]), "%.60s", e->detail);
		s->seq[s->n++] = e->seq;
	}
	return 0;
}

static void
assert_chain_ok(struct vault *v)
{
	uint8_t head[AUDIT_HASH_BYTES];
	uint64_t entries, bad;

	assert_int_equal(audit_verify(&v->audit, &entries, head, &bad), 0);
	assert_int_equal(bad, 0);
}

/* Appends j1..jn (one call each), with a ref on j2. */
static void
append_n(struct vault *v, int n)
{
	uint8_t ref[CRYPTO_REF_BYTES];

	memset(ref, 0xab, sizeof(ref));
	for (int i = 1; i <= n; i++) {
		char d[16];
		struct audit_rec r;

		snprintf(d, sizeof(d), "j%d", i);
		r = rec_of(d, i == 2 ? ref : NULL);
		assert_int_equal(journal_append(v->audit.jn, &r, 1), 0);
	}
}

static void
test_entries_reach_the_log_in_order(void **state)
{
	struct test_vault *f = *state;
	struct seen all = { 0 }, of_ref = { 0 };
	uint8_t ref[CRYPTO_REF_BYTES];
	struct audit_rec two[2];

	hold_entries(f);
	append_n(f->v, 3);
	two[0] = rec_of("j4", NULL);
	two[1] = rec_of("j5", NULL);
	assert_int_equal(journal_append(f->v->audit.jn, two, 2), 0);
	/* A scan moves the journaled entries in first. */
	assert_int_equal(audit_scan(&f->v->audit, 0, NULL, collect, &all), 0);
	assert_int_equal(all.n, 5);
	for (size_t i = 0; i < 5; i++) {
		char want[8];

		snprintf(want, sizeof(want), "j%zu", i + 1);
		assert_string_equal(all.detail[i], want);
		assert_true(i == 0 || all.seq[i] == all.seq[i - 1] + 1);
	}
	memset(ref, 0xab, sizeof(ref));
	assert_int_equal(audit_scan(&f->v->audit, 0, ref, collect, &of_ref), 0);
	assert_int_equal(of_ref.n, 1);
	assert_string_equal(of_ref.detail[0], "j2");
	assert_chain_ok(f->v);
}

/* Without a sync, the timed ingest moves entries in on its own. */
static void
test_timed_ingest(void **state)
{
	struct test_vault *f = *state;
	struct seen s = { 0 };
	char path[4200];
	struct stat st;

	append_n(f->v, 2);
	for (int i = 0; i < 200; i++) {
		snprintf(path, sizeof(path), "%s/audit-journal.0", f->cfg->store_dir);
		assert_int_equal(stat(path, &st), 0);
		if (st.st_size == 0)
			break;
		usleep(10000);
	}
	/* The file that took the entries was emptied once they were in. */
	assert_int_equal(st.st_size, 0);
	assert_int_equal(audit_scan(&f->v->audit, 0, NULL, collect, &s), 0);
	assert_int_equal(s.n, 2);
}

/* Copies the test dir as a crash would leave it; returns the copy's path. */
static char *
crash_copy(struct test_vault *f)
{
	char *copy = test_tmpdir(), cmd[9000];

	snprintf(cmd, sizeof(cmd), "cp -a '%s/.' '%s/'", f->dir, copy);
	assert_int_equal(system(cmd), 0);
	return copy;
}

static int
open_copy(const char *copy, struct vault **v, struct config **cfg)
{
	int r;

	*cfg = test_config(copy);
	if ((r = vault_open(v, *cfg, VAULT_OPEN_EXISTING)) != 0)
		return r;
	if ((r = journal_open(&(*v)->audit.jn, &(*v)->audit, (*cfg)->store_dir, HOUR_MS,
	    HOUR_MS)) != 0) {
		vault_close(*v);
		*v = NULL;
	}
	return r;
}

static void
close_copy(char *copy, struct vault *v, struct config *cfg)
{
	vault_close(v);
	config_free(cfg);
	test_rmtree(copy);
	free(copy);
}

static off_t
file_size(const char *dir, int i)
{
	char path[4200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/db/audit-journal.%d", dir, i);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void
test_crash_recovery(void **state)
{
	struct test_vault *f = *state;
	struct vault *v;
	struct config *cfg;
	struct seen s = { 0 };
	char *copy;

	hold_entries(f);
	append_n(f->v, 3);
	copy = crash_copy(f);
	assert_true(file_size(copy, 0) > 0);
	assert_int_equal(open_copy(copy, &v, &cfg), 0);
	/* Moved in, durably, and the files emptied. */
	assert_int_equal(file_size(copy, 0), 0);
	assert_int_equal(audit_scan(&v->audit, 0, NULL, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.detail[2], "j3");
	assert_chain_ok(v);
	/* New entries continue the journal's sequence. */
	append_n(v, 1);
	memset(&s, 0, sizeof(s));
	assert_int_equal(audit_scan(&v->audit, 0, NULL, collect, &s), 0);
	assert_int_equal(s.n, 4);
	close_copy(copy, v, cfg);
}

/*
 * Opens a copy of f's files as a crash leaves them, cut by `cut` bytes at
 * the end of journal file 0; returns how many entries of append_n the
 * audit log then holds, after checking the chain.
 */
static size_t
entries_after_crash(struct test_vault *f, off_t cut)
{
	struct vault *v;
	struct config *cfg;
	struct seen s = { 0 };
	char path[4200], *copy = crash_copy(f);

	snprintf(path, sizeof(path), "%s/db/audit-journal.0", copy);
	assert_int_equal(truncate(path, file_size(copy, 0) - cut), 0);
	assert_int_equal(open_copy(copy, &v, &cfg), 0);
	assert_int_equal(audit_scan(&v->audit, 0, NULL, collect, &s), 0);
	assert_chain_ok(v);
	close_copy(copy, v, cfg);
	return s.n;
}

/* Entries moved in before the crash are not moved in twice. */
static void
test_no_entry_twice(void **state)
{
	struct test_vault *f = *state;

	hold_entries(f);
	append_n(f->v, 2);
	assert_int_equal(journal_sync(f->v->audit.jn), 0);
	append_n(f->v, 1);	/* j1 again, after the synced two */
	assert_int_equal(entries_after_crash(f, 0), 3);
}

static void
test_torn_tail_is_dropped(void **state)
{
	struct test_vault *f = *state;

	hold_entries(f);
	append_n(f->v, 3);
	assert_int_equal(entries_after_crash(f, 7), 2);
}

/* Rewrites the copy's journal file 0 with bytes [from, to) cut out or, with
 * flip, one bit changed at from. */
static void
edit_journal(const char *copy, off_t from, off_t to, bool flip)
{
	char path[4200];
	uint8_t buf[65536];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/db/audit-journal.0", copy);
	assert_true((fd = open(path, O_RDWR)) >= 0);
	assert_true((n = pread(fd, buf, sizeof(buf), 0)) > to);
	if (flip)
		buf[from] ^= 0x01;
	else
		memmove(buf + from, buf + to, (size_t)(n - to)), n -= to - from;
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, buf, (size_t)n, 0), n);
	close(fd);
}

static void
test_changed_record_stops_the_open(void **state)
{
	struct test_vault *f = *state;
	struct vault *v = NULL;
	struct config *cfg;
	char *copy;

	hold_entries(f);
	append_n(f->v, 3);
	copy = crash_copy(f);
	edit_journal(copy, 40, 41, true);	/* inside the first entry's body */
	assert_int_equal(open_copy(copy, &v, &cfg), VAULT_ERR_STATE);
	assert_null(v);
	close_copy(copy, NULL, cfg);
}

static void
test_missing_record_stops_the_open(void **state)
{
	struct test_vault *f = *state;
	struct vault *v = NULL;
	struct config *cfg;
	struct audit_rec r = rec_of("j1", NULL);
	uint8_t body[AUDIT_BODY_MAX];
	char *copy;
	/* fmt, length, seq, at | body | mac */
	off_t first = (off_t)(1 + 2 + 8 + 8 + audit_encode(&r, body) + 32);

	hold_entries(f);
	append_n(f->v, 3);
	copy = crash_copy(f);
	edit_journal(copy, 0, first, false);	/* j1 taken out */
	assert_int_equal(open_copy(copy, &v, &cfg), VAULT_ERR_STATE);
	assert_null(v);
	close_copy(copy, NULL, cfg);
}

/* No attribute value or consumer id: the journal holds what the log holds. */
static void
test_journal_holds_no_plaintext_id(void **state)
{
	struct test_vault *f = *state;
	uint8_t ref[CRYPTO_REF_BYTES], buf[8192];
	struct audit_rec r;
	char path[4200];
	ssize_t n;
	int fd;

	hold_entries(f);
	crypto_consumer_ref(keyring_index_key(f->v->kr), "alice@example.com",
	    17, ref);
	r = rec_of("email", ref);
	assert_int_equal(journal_append(f->v->audit.jn, &r, 1), 0);
	snprintf(path, sizeof(path), "%s/audit-journal.0", f->cfg->store_dir);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_true((n = read(fd, buf, sizeof(buf))) > 0);
	close(fd);
	assert_null(memmem(buf, (size_t)n, "alice", 5));
	assert_non_null(memmem(buf, (size_t)n, ref, sizeof(ref)));
}

struct counted {
	size_t n;
	uint64_t last;
	bool ordered;
};

static int
count(const struct audit_entry *e, void *arg)
{
	struct counted *c = arg;

	c->ordered = c->ordered && e->seq > c->last;
	c->last = e->seq;
	c->n++;
	return 0;
}

/*
 * The consumer index trails the log and is built in batches of 5000; a
 * scan by consumer reads the index, then the entries past it from the log
 * itself, so it misses nothing and keeps the order.
 */
static void
test_index_in_batches(void **state)
{
	struct test_vault *f = *state;
	uint8_t a[CRYPTO_REF_BYTES], b[CRYPTO_REF_BYTES];
	struct audit_rec recs[100];
	struct counted n_a = { 0, 0, true }, n_b = { 0, 0, true };
	bool more;

	hold_entries(f);
	memset(a, 0x0a, sizeof(a));
	memset(b, 0x0b, sizeof(b));
	for (int i = 0; i < 100; i++)
		recs[i] = rec_of("idx", i % 4 == 0 ? b : a);
	for (int i = 0; i < 54; i++)	/* 5400 entries: two batches */
		assert_int_equal(journal_append(f->v->audit.jn, recs, 100), 0);
	assert_int_equal(journal_sync(f->v->audit.jn), 0);
	assert_int_equal(audit_index(&f->v->audit, &more), 0);
	assert_true(more);
	/* A write's entry, indexed with it, past the position: seen once. */
	assert_int_equal(audit_append(&f->v->audit, &recs[0]), 0);
	/* 5000 indexed, 401 past the index (within TAIL_MAX, 512). */
	assert_int_equal(audit_scan(&f->v->audit, 0, a, count, &n_a), 0);
	assert_int_equal(n_a.n, 4050);
	assert_true(n_a.ordered);
	assert_int_equal(audit_index(&f->v->audit, &more), 0);
	assert_false(more);
	assert_int_equal(audit_scan(&f->v->audit, 0, b, count, &n_b), 0);
	assert_int_equal(n_b.n, 1351);
	assert_true(n_b.ordered);
	/* Far behind (past 512), the index is caught up before the scan. */
	for (int i = 0; i < 6; i++)
		assert_int_equal(journal_append(f->v->audit.jn, recs, 100), 0);
	memset(&n_b, 0, sizeof(n_b));
	n_b.ordered = true;
	assert_int_equal(audit_scan(&f->v->audit, 0, b, count, &n_b), 0);
	assert_int_equal(n_b.n, 1351 + 6 * 25);
	assert_true(n_b.ordered);
	assert_int_equal(audit_index(&f->v->audit, &more), 0);
	assert_false(more);
}

/*
 * journal_sync_to(mark) moves in what was journaled up to mark: a write
 * group since (its prelude drains the journal) has done it already, and
 * then nothing more is moved (the later entries stay journaled), while
 * every entry up to the mark is in the log.
 */
static void
test_sync_to_a_mark(void **state)
{
	struct test_vault *f = *state;
	struct journal *j;
	uint8_t a[CRYPTO_REF_BYTES];
	struct audit_rec recs[10];
	struct counted n = { 0, 0, true };
	uint64_t mark;

	hold_entries(f);
	j = f->v->audit.jn;
	memset(a, 0x0a, sizeof(a));
	for (int i = 0; i < 10; i++)
		recs[i] = rec_of("mark", a);
	assert_int_equal(journal_append(j, recs, 10), 0);
	mark = journal_mark(j);
	/* Not yet in: sync_to moves them, and the one after too. */
	assert_int_equal(journal_append(j, recs, 1), 0);
	assert_int_equal(journal_sync_to(j, mark), 0);
	assert_int_equal(journal_backlog(j), 0);

	assert_int_equal(journal_append(j, recs, 10), 0);
	mark = journal_mark(j);
	/* A write (audit_append goes through the writer, which drains). */
	assert_int_equal(audit_append(&f->v->audit, &recs[0]), 0);
	assert_int_equal(journal_backlog(j), 0);
	assert_int_equal(journal_append(j, recs, 5), 0);
	assert_int_equal(journal_sync_to(j, mark), 0);
	assert_int_equal(journal_backlog(j), 5);
	assert_int_equal(audit_log_scan(&f->v->audit, 0, a, count, &n), 0);
	assert_int_equal(n.n, 10 + 1 + 10 + 1);
	assert_true(n.ordered);
	/* And a plain sync takes the rest. */
	assert_int_equal(journal_sync(j), 0);
	assert_int_equal(journal_backlog(j), 0);
}

/* A second opener of the same store's journal is refused. */
static void
test_one_owner(void **state)
{
	struct test_vault *f = *state;
	struct journal *other = NULL;

	assert_int_equal(journal_open(&other, &f->v->audit, f->cfg->store_dir,
	    HOUR_MS, HOUR_MS), VAULT_ERR_STATE);
	assert_null(other);
}

static uint64_t
moved_in(struct vault *v, const char *replica)
{
	struct store_txn *txn = NULL;
	uint64_t seq;
	int r;

	assert_int_equal(store_read_begin(v->store, &txn), 0);
	r = replica == NULL ?
	    meta_get_u64(txn, META_AUDIT_JOURNAL_SEQ, 0, &seq) :
	    meta_get_u64_named(txn, META_JOURNAL_SEQ_OF, replica, &seq);
	store_read_end(txn);
	return r == 0 ? seq : (r == VAULT_ERR_NOT_FOUND ? 0 : UINT64_MAX);
}

/*
 * Replicas on one store: each numbers a journal of its own, so each keeps
 * its last sequence moved in under journal_seq/<name>, and a restart of
 * one compares its files with its own number only.
 */
static void
test_sequence_per_replica(void **state)
{
	struct test_vault *f = *state;
	struct audit_log b = f->v->audit;
	struct seen s = { 0 };
	char dir_b[4096];

	journal_close(f->v->audit.jn);
	f->v->audit.jn = NULL;
	f->v->audit.replica = "a";
	b.replica = "b";
	b.jn = NULL;
	snprintf(dir_b, sizeof(dir_b), "%s/journal-b", f->dir);
	assert_int_equal(mkdir(dir_b, 0700), 0);
	assert_int_equal(journal_open(&f->v->audit.jn, &f->v->audit,
	    f->cfg->store_dir, HOUR_MS, HOUR_MS), 0);
	assert_int_equal(journal_open(&b.jn, &b, dir_b, HOUR_MS, HOUR_MS), 0);
	append_n(f->v, 3);
	assert_int_equal(journal_sync(f->v->audit.jn), 0);
	{
		struct audit_rec r = rec_of("jb1", NULL);

		assert_int_equal(journal_append(b.jn, &r, 1), 0);
		assert_int_equal(journal_sync(b.jn), 0);
	}
	assert_int_equal(moved_in(f->v, "a"), 3);
	assert_int_equal(moved_in(f->v, "b"), 1);
	assert_int_equal(moved_in(f->v, NULL), 0);	/* the single node's key */

	/* b restarts: it numbers on from its own 1, not from a's 3. */
	journal_close(b.jn);
	assert_int_equal(journal_open(&b.jn, &b, dir_b, HOUR_MS, HOUR_MS), 0);
	{
		struct audit_rec r = rec_of("jb2", NULL);

		assert_int_equal(journal_append(b.jn, &r, 1), 0);
		assert_int_equal(journal_sync(b.jn), 0);
	}
	assert_int_equal(moved_in(f->v, "b"), 2);
	assert_int_equal(moved_in(f->v, "a"), 3);
	journal_close(b.jn);
	assert_int_equal(audit_scan(&f->v->audit, 0, NULL, collect, &s), 0);
	assert_int_equal(s.n, 5);
	assert_chain_ok(f->v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_entries_reach_the_log_in_order,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_timed_ingest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_entry_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_is_dropped, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_changed_record_stops_the_open,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_record_stops_the_open,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_holds_no_plaintext_id,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_to_a_mark, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_index_in_batches, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_sequence_per_replica, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
