/*
 * DROP identifiers (engine/drop.h), from what a client writes and what a
 * list file carries. The first byte chooses the field (or, above them, a
 * list whose fields are the rest split at NUL bytes); the rest is the
 * value. A standardized form is NUL-terminated, within DROP_STD_MAX, and
 * holds only what its field keeps, and standardizes to itself; a list's Base64 decodes only from 44
 * characters, and back to the same text.
 */
#include <string.h>

#include "engine/drop.h"
#include "fuzz_common.h"

static bool
only(const char *s, size_t n, const char *set)
{
	for (size_t i = 0; i < n; i++)
		if (strchr(set, s[i]) == NULL || s[i] == '\0')
			return false;
	return true;
}

#define DIGITS "0123456789"
#define LOWER "abcdefghijklmnopqrstuvwxyz"

static void
field(enum drop_field f, const char *v, size_t len)
{
	char out[DROP_STD_MAX], again[DROP_STD_MAX];
	size_t n, m;

	if (!drop_standardize(f, v, len, out, &n))
		return;
	FUZZ_CHECK(n < DROP_STD_MAX && out[n] == '\0' && strlen(out) == n);
	switch (f) {
	case DROP_F_PHONE:
	case DROP_F_DOB:
		FUZZ_CHECK(only(out, n, DIGITS));
		break;
	case DROP_F_MAID:
		FUZZ_CHECK(n == 32 && only(out, n, DIGITS "abcdef"));
		break;
	case DROP_F_VIN:
	case DROP_F_CTV_ID:
	case DROP_F_ZIP:
	case DROP_F_FIRST_NAME:
	case DROP_F_LAST_NAME:
		FUZZ_CHECK(only(out, n, DIGITS LOWER));
		break;
	case DROP_F_EMAIL:
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(out[i] != ' ' && !(out[i] >= 'A' && out[i] <= 'Z'));
		break;
	default:
		break;
	}
	/* A standard form is its own standard form. */
	FUZZ_CHECK(drop_standardize(f, out, n, again, &m));
	FUZZ_CHECK(m == n && memcmp(again, out, n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *values[DROP_FIELDS] = { NULL };
	size_t lens[DROP_FIELDS] = { 0 };
	uint8_t hash[DROP_HASH_BYTES], back[DROP_HASH_BYTES];
	char b64[DROP_B64_BYTES];
	const char *v;
	size_t len;
	int pick;

	fuzz_init();
	if (size < 1 || size > 4096)
		return 0;
	pick = data[0];
	v = (const char *)data + 1;
	len = size - 1;
	if (drop_unb64(v, len, hash)) {
		drop_b64(hash, b64);
		FUZZ_CHECK(len == DROP_B64_BYTES - 1 && memcmp(b64, v, len) == 0);
	}
	if (pick % 16 < DROP_FIELDS) {
		field((enum drop_field)(pick % 16), v, len);
		return 0;
	}
	/* A list: the fields of it, in order, from the NUL-split rest. */
	{
		const struct drop_list_def *d = &drop_lists[pick % DROP_LISTS];
		const char *p = v, *end = v + len;

		for (size_t i = 0; i < d->n && p <= end; i++) {
			const char *nul = memchr(p, '\0', (size_t)(end - p));
			size_t n = nul ? (size_t)(nul - p) : (size_t)(end - p);

			values[d->fields[i]] = p;
			lens[d->fields[i]] = n;
			p += n + 1;
		}
		if (drop_hash((enum drop_list)(pick % DROP_LISTS), values, lens,
		    hash)) {
			drop_b64(hash, b64);
			FUZZ_CHECK(drop_unb64(b64, strlen(b64), back));
			FUZZ_CHECK(memcmp(back, hash, sizeof(hash)) == 0);
		}
	}
	return 0;
}
