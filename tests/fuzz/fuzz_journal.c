/*
 * The journal scan (audit/journal.h): journal_parse over the bytes of an
 * audit-journal file, as vaultd reads them at start. An input whose first
 * byte is odd has each record's MAC made afresh with the fuzzer's audit key
 * (a record's MAC is what the file's writer knows and the fuzzer cannot
 * guess), so the checks after it are reached too.
 *
 * Every record passed on must lie within the file and hold a body that
 * decodes as an audit entry; a damaged file is refused at a record's start.
 */
#include <string.h>

#include "audit/audit.h"
#include "audit/journal.h"
#include "fuzz_common.h"

/* journal.h: fmt(1) | body length(2) | seq(8) | at(8) | body | mac(32) */
#define JHDR (1 + 2 + 8 + 8)
#define MAC_BYTES 32
#define DOMAIN "vaultd audit journal v1"
#define HDR (1 + 8 + 2 * AUDIT_HASH_BYTES)	/* audit.h: the entry header */

static uint8_t key[CRYPTO_KEY_BYTES];

struct walk {
	const uint8_t *buf;
	size_t len, n;
};

static void
mac_of(const uint8_t *rec, size_t n, uint8_t out[MAC_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, CRYPTO_KEY_BYTES, MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)DOMAIN, sizeof(DOMAIN) - 1);
	crypto_generichash_update(&st, rec, n);
	crypto_generichash_final(&st, out, MAC_BYTES);
}

/* Gives every whole record the MAC it should have. */
static void
remac(uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (len - off >= JHDR) {
		size_t n = (size_t)buf[off + 1] << 8 | buf[off + 2];

		if (n > AUDIT_BODY_MAX || len - off < JHDR + n + MAC_BYTES)
			break;
		mac_of(buf + off, JHDR + n, buf + off + JHDR + n);
		off += JHDR + n + MAC_BYTES;
	}
}

static int
visit(uint64_t seq, uint64_t at_ms, const uint8_t *body, size_t len, void *arg)
{
	struct walk *w = arg;
	struct audit_entry e;
	uint8_t *rec;

	(void)at_ms;
	FUZZ_CHECK(body >= w->buf + JHDR && body + len + MAC_BYTES <= w->buf + w->len);
	FUZZ_CHECK(len <= AUDIT_BODY_MAX);
	if ((rec = calloc(1, HDR + len)) == NULL)
		abort();
	rec[0] = 1;
	memcpy(rec + HDR, body, len);
	FUZZ_CHECK(audit_entry_decode(seq, rec, HDR + len, &e) == 0);
	free(rec);
	w->n++;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct walk w;
	uint8_t *buf;
	const char *why = NULL;
	size_t used = 0, at = 0;
	int r;

	fuzz_init();
	if (key[0] == 0)
		fuzz_key(key, sizeof(key), 11);
	if (size < 1)
		return 0;
	if ((buf = malloc(size)) == NULL)
		abort();
	memcpy(buf, data + 1, size - 1);
	if (data[0] & 1)
		remac(buf, size - 1);
	w = (struct walk){ buf, size - 1, 0 };
	r = journal_parse(buf, size - 1, key, visit, &w, &used, &at, &why);
	FUZZ_CHECK(used <= size - 1 && at <= size - 1);
	if (why != NULL)
		FUZZ_CHECK(r == VAULT_ERR_STATE && at < size - 1);
	else
		FUZZ_CHECK(r == 0 && size - 1 - used < JHDR + AUDIT_BODY_MAX +
		    MAC_BYTES);
	free(buf);
	return 0;
}
