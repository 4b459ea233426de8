/*
 * Audit records (audit/audit.h, audit/audit_text.h). The first byte
 * chooses what the rest is:
 *   0: a stored entry (the audit table's value) for audit_entry_decode;
 *      every text field it gives a reader must be valid UTF-8;
 *   1: an entry body (a journal record's, audit_check_body); one that
 *      passes must decode as a stored entry too;
 *   2: text for the stored form (audit_text_store/ok/copy): what is stored
 *      passes audit_text_ok, and what readers get is valid UTF-8 cut to
 *      whole characters or escapes;
 *   3: fields (split at NUL bytes) for audit_encode: its body must pass
 *      audit_check_body and decode to those fields in their stored form.
 */
#include <string.h>

#include "audit/audit.h"
#include "audit/audit_text.h"
#include "util/utf8.h"
#include "fuzz_common.h"

#define HDR (1 + 8 + 2 * AUDIT_HASH_BYTES)	/* audit.h: the entry header */

static void
text_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	FUZZ_CHECK(n < cap);
	FUZZ_CHECK(utf8_valid((const uint8_t *)s, n));
}

static void
entry_ok(const struct audit_entry *e)
{
	text_ok(e->principal, sizeof(e->principal));
	text_ok(e->method, sizeof(e->method));
	text_ok(e->detail, sizeof(e->detail));
	text_ok(e->purpose, sizeof(e->purpose));
	text_ok(e->dataset, sizeof(e->dataset));
	text_ok(e->outcome, sizeof(e->outcome));
	text_ok(e->names, sizeof(e->names));
	text_ok(e->source, sizeof(e->source));
}

static void
decode_entry(const uint8_t *data, size_t size)
{
	struct audit_entry *e = malloc(sizeof(*e));
	uint8_t *copy = malloc(size ? size : 1);
	char names[sizeof(e->names)], *out[AUDIT_NAMES_MAX];

	if (e == NULL || copy == NULL)
		abort();
	if (size > 0)
		memcpy(copy, data, size);
	if (audit_entry_decode(42, copy, size, e) == 0) {
		entry_ok(e);
		(void)audit_kind(e->method);
		memcpy(names, e->names, sizeof(names));
		FUZZ_CHECK(audit_split_names(names, out, AUDIT_NAMES_MAX) <=
		    AUDIT_NAMES_MAX);
	}
	free(copy);
	free(e);
}

static void
check_body(const uint8_t *data, size_t size)
{
	struct audit_entry e;
	uint8_t *rec;

	if (audit_check_body(data, size) != 0)
		return;
	FUZZ_CHECK(size <= AUDIT_BODY_MAX);
	if ((rec = calloc(1, HDR + size)) == NULL)
		abort();
	rec[0] = 1;
	memcpy(rec + HDR, data, size);
	FUZZ_CHECK(audit_entry_decode(1, rec, HDR + size, &e) == 0);
	entry_ok(&e);
	free(rec);
}

static void
text(const uint8_t *data, size_t size)
{
	uint8_t stored[AUDIT_TEXT_MAX];
	char dst[AUDIT_TEXT_MAX + 1];
	size_t n, cap;

	if (size < 1)
		return;
	cap = 1 + data[0] % sizeof(dst);	/* the reader's buffer */
	data++;
	size--;
	n = audit_text_store(data, size, stored);
	FUZZ_CHECK(n <= AUDIT_TEXT_MAX);
	FUZZ_CHECK(audit_text_ok(stored, n));
	/* Clean text is kept as it is (escaped text is escaped again). */
	if (audit_text_ok(data, size) && (size < 13 ||
	    memcmp(data, "invalid-utf8:", 13) != 0))
		FUZZ_CHECK(n == size && memcmp(stored, data, n) == 0);
	audit_text_copy(dst, cap, data, size);
	text_ok(dst, cap);
	audit_text_copy(dst, cap, stored, n);
	text_ok(dst, cap);
}

static void
encode(const uint8_t *data, size_t size)
{
	char *f[AUDIT_N_FIELDS] = { 0 }, *buf = fuzz_strndup(data, size);
	uint8_t ref[CRYPTO_REF_BYTES], *body = malloc(AUDIT_BODY_MAX), *rec;
	struct audit_rec r;
	struct audit_entry e;
	size_t n, k = 0;

	if (body == NULL)
		abort();
	/* Up to nine fields separated by NUL bytes; the rest are empty. */
	for (char *p = buf; k < AUDIT_N_FIELDS && p <= buf + size; k++) {
		f[k] = p;
		p += strlen(p) + 1;
	}
	memset(ref, 0xab, sizeof(ref));
	r = (struct audit_rec){ f[0], f[1] ? f[1] : "", k > 2 ? ref : NULL,
	    f[3], f[4], f[5], f[6], f[7], f[8] };
	n = audit_encode(&r, body);
	FUZZ_CHECK(n <= AUDIT_BODY_MAX);
	FUZZ_CHECK(audit_check_body(body, n) == 0);
	if ((rec = calloc(1, HDR + n)) == NULL)
		abort();
	rec[0] = 1;
	memcpy(rec + HDR, body, n);
	FUZZ_CHECK(audit_entry_decode(7, rec, HDR + n, &e) == 0);
	entry_ok(&e);
	FUZZ_CHECK(e.has_ref == (r.ref != NULL));
	free(rec);
	free(body);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		decode_entry(data + 1, size - 1);
		break;
	case 1:
		check_body(data + 1, size - 1);
		break;
	case 2:
		text(data + 1, size - 1);
		break;
	case 3:
		encode(data + 1, size - 1);
		break;
	}
	return 0;
}
