/*
 * The store journal's recovery (store/wal.h): wal_parse over the bytes of
 * a segment, as a recovery reads them, and wal_body_ops over each record's
 * body, as the replay applies it. An input whose first byte is odd has
 * each record's MAC made afresh with the fuzzer's journal key (the MAC is
 * what the journal's writer knows and the fuzzer cannot guess), so the op
 * walker behind it is reached too.
 *
 * Every record passed on and every op in it must lie within the segment;
 * a damaged segment is refused with a reason, a torn one ends the walk.
 */
#include <string.h>

#include "fuzz_common.h"
#include "store/wal.h"

/* wal.h: magic(4) | body length(4) | seq(8) | body | mac(32) */
#define HDR 16
#define MAC_BYTES 32
#define DOMAIN "vaultd store journal v1"

static uint8_t key[WAL_KEY_BYTES];

struct walk {
	const uint8_t *buf;
	size_t len, n;
	const uint8_t *body;
	size_t body_len;
};

/* Gives every whole record the MAC it should have. */
static void
remac(uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (len - off >= HDR) {
		size_t n = store_get_u32(buf + off + 4);
		crypto_generichash_state st;

		if (n > len - off - HDR || len - off - HDR - n < MAC_BYTES)
			break;
		crypto_generichash_init(&st, key, WAL_KEY_BYTES, MAC_BYTES);
		crypto_generichash_update(&st, (const uint8_t *)DOMAIN,
		    sizeof(DOMAIN) - 1);
		crypto_generichash_update(&st, buf + off, HDR + n);
		crypto_generichash_final(&st, buf + off + HDR + n, MAC_BYTES);
		off += HDR + n + MAC_BYTES;
	}
}

static int
op(enum wal_op o, enum store_space sp, const uint8_t *k, size_t klen,
    const uint8_t *v, size_t vlen, void *arg)
{
	struct walk *w = arg;

	FUZZ_CHECK(o >= WAL_PUT && o <= WAL_DELPFX && sp < STORE_SPACES);
	FUZZ_CHECK(klen >= 1 && klen <= STORE_KEY_MAX);
	FUZZ_CHECK(k >= w->body && k + klen <= w->body + w->body_len);
	FUZZ_CHECK(v >= k + klen && v + vlen <= w->body + w->body_len);
	return 0;
}

static int
visit(const struct wal_rec *rec, void *arg)
{
	struct walk *w = arg;

	FUZZ_CHECK(rec->body >= w->buf + HDR &&
	    rec->body + rec->len + MAC_BYTES <= w->buf + w->len);
	w->body = rec->body;
	w->body_len = rec->len;
	(void)wal_body_ops(rec->body, rec->len, op, w);
	w->n++;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct walk w;
	uint8_t *buf;
	const char *why = NULL;
	size_t end = 0;
	bool torn = false;
	int r;

	fuzz_init();
	if (key[0] == 0)
		fuzz_key(key, sizeof(key), 13);
	if (size < 1)
		return 0;
	if ((buf = malloc(size)) == NULL)
		abort();
	memcpy(buf, data + 1, size - 1);
	if (data[0] & 1)
		remac(buf, size - 1);
	w = (struct walk){ buf, size - 1, 0, NULL, 0 };
	r = wal_parse(buf, size - 1, key, visit, &w, &end, &torn, &why);
	FUZZ_CHECK(end <= size - 1);
	if (why != NULL)
		FUZZ_CHECK(r == VAULT_ERR_STATE && !torn && end < size - 1);
	else
		FUZZ_CHECK(r == 0);
	free(buf);
	return 0;
}
