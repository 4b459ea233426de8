/*
 * Page tokens (engine/pagetoken.h): the page_token field of FetchFeatures
 * as the handler hands it over (a C string of at most 1024 bytes, which
 * reqcheck allows). A decode either fails with one of its two messages or
 * gives a position. With the first byte odd, the input is instead a
 * position and bytes to change: the token made of that position must
 * decode to it, and the token changed anywhere must not decode to another.
 */
#include <string.h>

#include "engine/pagetoken.h"
#include "fuzz_common.h"

#define MAX_TOKEN 1024		/* dispatch.c: the page_token limit */

static uint8_t key[CRYPTO_KEY_BYTES], bind[PAGETOKEN_BIND_BYTES];

static void
check_why(int r, const char *why)
{
	FUZZ_CHECK(r == VAULT_ERR_INVALID);
	FUZZ_CHECK(strcmp(why, "page_token: malformed") == 0 ||
	    strncmp(why, "page_token: not a token of this query", 37) == 0);
}

static void
decode_text(const uint8_t *data, size_t size)
{
	struct fetch_pos pos;
	const char *why = NULL;
	char *tok;
	int r;

	if (size == 0 || size > MAX_TOKEN)
		return;
	tok = fuzz_strndup(data, size);
	if (tok[0] != '\0' &&
	    (r = pagetoken_decode(key, tok, bind, &pos, &why)) != 0)
		check_why(r, why);
	free(tok);
}

/* order(8) | ref(32) | then pairs of (index, xor) applied to the token. */
static void
round_trip(const uint8_t *data, size_t size)
{
	struct fetch_pos pos = { 0 }, out;
	char tok[PAGETOKEN_CHARS] = "";
	const char *why = NULL;
	size_t len;
	int r;

	if (size < 8 + CRYPTO_REF_BYTES)
		return;
	for (int i = 0; i < 8; i++)
		pos.order = pos.order << 8 | data[i];
	memcpy(pos.ref, data + 8, CRYPTO_REF_BYTES);
	data += 8 + CRYPTO_REF_BYTES;
	size -= 8 + CRYPTO_REF_BYTES;
	FUZZ_CHECK(pagetoken_encode(key, &pos, bind, tok) == 0);
	len = strlen(tok);
	FUZZ_CHECK(len > 0 && len < PAGETOKEN_CHARS);
	FUZZ_CHECK(pagetoken_decode(key, tok, bind, &out, &why) == 0);
	FUZZ_CHECK(out.order == pos.order &&
	    memcmp(out.ref, pos.ref, CRYPTO_REF_BYTES) == 0);
	for (size_t i = 0; i + 1 < size; i += 2) {
		size_t at = data[i] % (len + 1);

		tok[at] ^= (char)data[i + 1];
	}
	if (tok[0] == '\0')
		return;
	r = pagetoken_decode(key, tok, bind, &out, &why);
	if (r != 0)
		check_why(r, why);
	else	/* only the token itself decodes (or an equal text of it) */
		FUZZ_CHECK(out.order == pos.order &&
		    memcmp(out.ref, pos.ref, CRYPTO_REF_BYTES) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	if (key[0] == 0) {
		fuzz_key(key, sizeof(key), 7);
		fuzz_key(bind, sizeof(bind), 99);
	}
	if (size < 1)
		return 0;
	if (data[0] & 1)
		round_trip(data + 1, size - 1);
	else
		decode_text(data + 1, size - 1);
	return 0;
}
