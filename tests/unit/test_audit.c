/*
 * The audit log records only valid UTF-8 text: a field that is not valid
 * UTF-8, or holds control characters, is stored escaped behind a marker,
 * never raw; whichever way the entry comes in (a write's transaction, or
 * the journal). And the chain checks behind the start-up check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "audit/journal.h"
#include "audit/scan.h"
#include "testutil.h"

/* A strict UTF-8 check, independent of the one under test. */
static bool
is_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		unsigned c = *p, n, cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

static bool
has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

struct last {
	struct audit_entry e;
	size_t n;
};

static int
keep_last(const struct audit_entry *e, void *arg)
{
	struct last *l = arg;

	l->e = *e;
	l->n++;
	return 0;
}

static void
assert_clean(const struct audit_entry *e)
{
	const char *f[] = { e->principal, e->method, e->detail, e->purpose,
	    e->dataset, e->outcome };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		assert_true(is_utf8(f[i]));
		assert_false(has_control(f[i]));
	}
}

static struct audit_entry
append_and_read(struct vault *v, const struct audit_rec *rec)
{
	struct last l = { 0 };

	assert_int_equal(audit_append(&v->audit, rec), 0);
	assert_int_equal(audit_scan(&v->audit, 0, NULL, keep_last, &l), 0);
	assert_true(l.n > 0);
	assert_clean(&l.e);
	return l.e;
}

static void
test_invalid_utf8_is_escaped_and_marked(void **state)
{
	struct test_vault *f = *state;
	struct audit_rec rec = { "reader", "/vault.v1.Consumers/GetAttributes",
	    NULL, "age", "serv\xffice", "ds\xc3", "denied", NULL, NULL };
	struct audit_entry e = append_and_read(f->v, &rec);
	uint8_t head[AUDIT_HASH_BYTES];
	uint64_t n, bad;

	assert_string_equal(e.purpose, "invalid-utf8:serv\\xffice");
	/* A sequence cut short is as invalid as a stray byte. */
	assert_string_equal(e.dataset, "invalid-utf8:ds\\xc3");
	/* Valid fields stay as they were. */
	assert_string_equal(e.principal, "reader");
	assert_string_equal(e.detail, "age");
	assert_int_equal(audit_verify(&f->v->audit, &n, head, &bad), 0);
	assert_int_equal(bad, 0);
}

static void
test_control_characters_are_escaped(void **state)
{
	struct test_vault *f = *state;
	struct audit_rec rec = { "-", "/x", NULL, "a\nb\tc\x7f", "caf\xc3\xa9",
	    "back\\slash\x1b[31m", "ok", NULL, NULL };
	struct audit_entry e = append_and_read(f->v, &rec);

	assert_string_equal(e.detail, "invalid-utf8:a\\x0ab\\x09c\\x7f");
	/* Valid UTF-8 without control characters is kept as is. */
	assert_string_equal(e.purpose, "caf\xc3\xa9");
	/* The escape character itself is escaped: the form is unambiguous. */
	assert_string_equal(e.dataset, "invalid-utf8:back\\x5cslash\\x1b[31m");
}

static void
test_overlong_and_surrogates_are_invalid(void **state)
{
	struct test_vault *f = *state;
	/* "/" as an overlong 2-byte form; U+D800 encoded; U+110000. */
	struct audit_rec rec = { "p", "m", NULL, "\xc0\xaf", "\xed\xa0\x80",
	    "\xf4\x90\x80\x80", "ok", NULL, NULL };
	struct audit_entry e = append_and_read(f->v, &rec);

	assert_string_equal(e.detail, "invalid-utf8:\\xc0\\xaf");
	assert_string_equal(e.purpose, "invalid-utf8:\\xed\\xa0\\x80");
	assert_string_equal(e.dataset, "invalid-utf8:\\xf4\\x90\\x80\\x80");
}

/* Text that merely looks escaped is marked too, so the form tells. */
static void
test_marker_in_valid_text_is_escaped(void **state)
{
	struct test_vault *f = *state;
	struct audit_rec rec = { "p", "m", NULL, "", "invalid-utf8:x", "", "ok", NULL, NULL };
	struct audit_entry e = append_and_read(f->v, &rec);

	assert_string_equal(e.purpose, "invalid-utf8:invalid-utf8:x");
}

/* Cutting a long field, or a decoded copy, never splits a character. */
static void
test_cuts_keep_whole_characters(void **state)
{
	struct test_vault *f = *state;
	char detail[2000], purpose[200];
	struct audit_rec rec = { "p", "m", NULL, detail, purpose, "", "ok", NULL, NULL };
	struct audit_entry e;

	/* 1 + 2 * 999 bytes: the 1024-byte cut falls inside a character. */
	detail[0] = 'x';
	for (size_t i = 0; i < 999; i++)
		memcpy(detail + 1 + 2 * i, "\xc3\xa9", 2);
	detail[1999] = '\0';
	/* The decoded purpose holds 63 bytes: the cut falls inside one too. */
	for (size_t i = 0; i < 99; i++)
		memcpy(purpose + 2 * i, "\xc3\xa9", 2);
	purpose[198] = '\0';
	e = append_and_read(f->v, &rec);
	assert_false(strncmp(e.detail, "invalid-utf8:", 13) == 0);
	assert_false(strncmp(e.purpose, "invalid-utf8:", 13) == 0);
	assert_int_equal(strlen(e.purpose) % 2, 0);
}

/* Entries that come through the journal are held to the same rule. */
static void
test_journaled_entries_are_escaped(void **state)
{
	struct test_vault *f = *state;
	struct audit_rec rec = { "reader", "/vault.v1.Consumers/GetAttributes",
	    NULL, "", "serv\xffice", "", "ok", NULL, NULL };
	struct last l = { 0 };

	assert_int_equal(journal_open(&f->v->audit.jn, &f->v->audit, f->cfg->store_dir,
	    JOURNAL_INGEST_MS, JOURNAL_INDEX_MS), 0);
	assert_int_equal(journal_append(f->v->audit.jn, &rec, 1), 0);
	assert_int_equal(audit_scan(&f->v->audit, 0, NULL, keep_last, &l), 0);
	assert_int_equal(l.n, 1);
	assert_clean(&l.e);
	assert_string_equal(l.e.purpose, "invalid-utf8:serv\\xffice");
}

/* A body not made by audit_encode (an older journal) is escaped on append. */
static int
append_raw(struct store_txn *txn, void *arg)
{
	static const uint8_t body[] = { 0, 1, 'p', 0, 1, 'm', 0, 0, 0, 3, 'a',
	    0, 'b', 0, 2, 0xfe, 'x', 0, 0, 0, 2, 'o', 'k' };

	return audit_append_body_txn(&((struct vault *)arg)->audit, txn, 1, body, sizeof(body), false);
}

static void
test_raw_bodies_are_escaped(void **state)
{
	struct test_vault *f = *state;
	struct last l = { 0 };
	uint8_t head[AUDIT_HASH_BYTES];
	uint64_t n, bad;

	assert_int_equal(writer_submit(f->v->wr, append_raw, f->v), 0);
	assert_int_equal(audit_scan(&f->v->audit, 0, NULL, keep_last, &l), 0);
	assert_int_equal(l.n, 1);
	assert_clean(&l.e);
	assert_string_equal(l.e.detail, "invalid-utf8:a\\x00b");
	assert_string_equal(l.e.purpose, "invalid-utf8:\\xfex");
	assert_int_equal(audit_verify(&f->v->audit, &n, head, &bad), 0);
	assert_int_equal(bad, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_invalid_utf8_is_escaped_and_marked,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_control_characters_are_escaped,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_overlong_and_surrogates_are_invalid,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_marker_in_valid_text_is_escaped,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_cuts_keep_whole_characters,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_journaled_entries_are_escaped,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_raw_bodies_are_escaped,
		    test_vault_setup, test_vault_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
