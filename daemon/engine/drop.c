/*
 * DROP identifiers (drop.h): standardization, hashing, the keyed form.
 */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "engine/drop.h"

/* What a field keeps of a value, before the lengths are checked. */
enum keep {
	KEEP_NON_SPACE,		/* everything but whitespace */
	KEEP_DIGITS,
	KEEP_HEX,
	KEEP_ALNUM,
	KEEP_NAME,		/* letters and digits, Latin letters folded */
};

/*
 * The specification's rules (CalPrivacy, DROP Data Broker API 1.2.0,
 * "Standardization and Hashing"): every field is lowercased; then what it
 * keeps, the last or first so many characters, leading zeros dropped, and
 * the lengths it must have.
 */
static const struct field_rule {
	const char *name;
	enum keep keep;
	size_t last, first;	/* keep the last / first n (0: all) */
	bool no_leading_zeros;
	size_t min, max;	/* lengths after (max 0: DROP_STD_MAX - 1) */
	char stop;		/* what ends the value (ZIP+4's '-'), or 0 */
} fields[DROP_FIELDS] = {
	[DROP_F_EMAIL] = { "email", KEEP_NON_SPACE, 0, 0, false, 3, 0, 0 },
	[DROP_F_PHONE] = { "phone", KEEP_DIGITS, 10, 0, false, 1, 0, 0 },
	[DROP_F_MAID] = { "maid", KEEP_HEX, 0, 0, false, 32, 32, 0 },
	[DROP_F_CTV_ID] = { "ctv_id", KEEP_ALNUM, 0, 0, false, 8, 32, 0 },
	[DROP_F_VIN] = { "vin", KEEP_ALNUM, 0, 0, false, 17, 17, 0 },
	[DROP_F_FIRST_NAME] = { "first_name", KEEP_NAME, 0, 0, false, 1, 0, 0 },
	[DROP_F_LAST_NAME] = { "last_name", KEEP_NAME, 0, 0, false, 1, 0, 0 },
	[DROP_F_DOB] = { "dob", KEEP_DIGITS, 0, 0, false, 8, 8, 0 },
	/* ZIP+4 loses its +4 first: "02139-1234" -> 2139. */
	[DROP_F_ZIP] = { "zip", KEEP_ALNUM, 0, 5, true, 1, 5, '-' },
};

const struct drop_list_def drop_lists[DROP_LISTS] = {
	[DROP_LIST_EMAIL] = { "Email", { DROP_F_EMAIL }, 1 },
	[DROP_LIST_PHONE] = { "Phone", { DROP_F_PHONE }, 1 },
	[DROP_LIST_MAID] = { "MAID", { DROP_F_MAID }, 1 },
	[DROP_LIST_CTVID] = { "CTVID", { DROP_F_CTV_ID }, 1 },
	[DROP_LIST_NDZ] = { "NDZ", { DROP_F_FIRST_NAME, DROP_F_LAST_NAME,
	    DROP_F_DOB, DROP_F_ZIP }, 4 },
	[DROP_LIST_NAMEVIN] = { "NameVIN", { DROP_F_FIRST_NAME,
	    DROP_F_LAST_NAME, DROP_F_VIN }, 3 },
};

/*
 * Latin letters of U+00C0..U+00FF (UTF-8 C3 80..C3 BF) folded to ASCII;
 * "" for the two signs among them (x, /), dropped like any non-letter.
 * Other non-ASCII letters (Greek, Cyrillic, Latin Extended) are not folded
 * yet: a name holding one has no standard form here and is not indexed.
 */
static const char *const latin1[64] = {
	"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e",
	"i", "i", "i", "i", "d", "n", "o", "o", "o", "o", "o", "",
	"o", "u", "u", "u", "u", "y", "th", "ss", "a", "a", "a", "a",
	"a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
	"d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u",
	"u", "y", "th", "y",
};

enum drop_field
drop_field_parse(const char *name)
{
	for (int f = DROP_F_NONE + 1; f < DROP_FIELDS; f++)
		if (strcmp(name, fields[f].name) == 0)
			return (enum drop_field)f;
	return DROP_F_NONE;
}

const char *
drop_field_name(enum drop_field f)
{
	return f > DROP_F_NONE && f < DROP_FIELDS ? fields[f].name : "";
}

int
drop_list_parse(const char *name)
{
	for (int l = 0; l < DROP_LISTS; l++)
		if (strcasecmp(name, drop_lists[l].name) == 0)
			return l;
	return -1;
}

static bool
is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool
keeps(enum keep k, unsigned char c)
{
	bool digit = c >= '0' && c <= '9', lower = c >= 'a' && c <= 'z';

	switch (k) {
	case KEEP_NON_SPACE: return !is_space(c);
	case KEEP_DIGITS: return digit;
	case KEEP_HEX: return digit || (c >= 'a' && c <= 'f');
	case KEEP_ALNUM:
	case KEEP_NAME: return digit || lower;
	}
	return false;
}

bool
drop_standardize(enum drop_field f, const char *value, size_t len, char *out,
    size_t *out_len)
{
	const struct field_rule *rule;
	size_t n = 0, max, from = 0;

	if (f <= DROP_F_NONE || f >= DROP_FIELDS)
		return false;
	rule = &fields[f];
	max = rule->max ? rule->max : DROP_STD_MAX - 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		const char *fold;

		if (rule->stop != 0 && c == (unsigned char)rule->stop)
			break;
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c >= 0x80 && rule->keep == KEEP_NAME) {
			if (c != 0xc3 || i + 1 == len ||
			    ((unsigned char)value[i + 1] & 0xc0) != 0x80)
				return false;	/* a letter not folded yet */
			fold = latin1[(unsigned char)value[++i] & 0x3f];
			for (; *fold != '\0'; fold++)
				if (n < DROP_STD_MAX - 1)
					out[n++] = *fold;
			continue;
		}
		if ((c >= 0x80 && rule->keep == KEEP_NON_SPACE) ||
		    (c < 0x80 && keeps(rule->keep, c))) {
			if (n == DROP_STD_MAX - 1)
				return false;
			out[n++] = (char)c;
		}
	}
	if (rule->no_leading_zeros)
		while (from < n && out[from] == '0')
			from++;
	if (rule->last && n - from > rule->last)
		from = n - rule->last;
	if (from > 0) {
		memmove(out, out + from, n - from);
		n -= from;
	}
	if (rule->first && n > rule->first)
		n = rule->first;
	out[n] = '\0';
	*out_len = n;
	return n >= rule->min && n <= max;
}

void
drop_b64(const uint8_t hash[DROP_HASH_BYTES], char out[DROP_B64_BYTES])
{
	sodium_bin2base64(out, DROP_B64_BYTES, hash, DROP_HASH_BYTES,
	    sodium_base64_VARIANT_ORIGINAL);
}

bool
drop_unb64(const char *b64, size_t len, uint8_t hash[DROP_HASH_BYTES])
{
	size_t n;

	return len == DROP_B64_BYTES - 1 && sodium_base642bin(hash,
	    DROP_HASH_BYTES, b64, len, NULL, &n, NULL,
	    sodium_base64_VARIANT_ORIGINAL) == 0 && n == DROP_HASH_BYTES;
}

bool
drop_hash(enum drop_list l, const char *const values[DROP_FIELDS],
    const size_t lens[DROP_FIELDS], uint8_t hash[DROP_HASH_BYTES])
{
	const struct drop_list_def *d = &drop_lists[l];
	char std[DROP_STD_MAX], joined[4 * (DROP_B64_BYTES - 1) + 1];
	uint8_t h[DROP_HASH_BYTES];
	size_t n, off = 0;

	for (size_t i = 0; i < d->n; i++) {
		enum drop_field f = d->fields[i];

		if (values[f] == NULL ||
		    !drop_standardize(f, values[f], lens[f], std, &n))
			return false;
		crypto_hash_sha256(h, (const uint8_t *)std, n);
		if (d->n == 1) {
			memcpy(hash, h, DROP_HASH_BYTES);
			sodium_memzero(std, sizeof(std));
			return true;
		}
		drop_b64(h, joined + off);
		off += DROP_B64_BYTES - 1;
	}
	/* A composite: the fields' Base64 hashes, joined, hashed again. */
	crypto_hash_sha256(hash, (const uint8_t *)joined, off);
	sodium_memzero(std, sizeof(std));
	sodium_memzero(joined, sizeof(joined));
	return true;
}

void
drop_keyed(const uint8_t *index_key, enum drop_list l,
    const uint8_t hash[DROP_HASH_BYTES], uint8_t out[DROP_KEYED_BYTES])
{
	static const char personal[crypto_generichash_blake2b_PERSONALBYTES] =
	    "vaultd-drop";
	static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];
	crypto_generichash_blake2b_state st;
	uint8_t list = (uint8_t)l;

	crypto_generichash_blake2b_init_salt_personal(&st, index_key, 32,
	    DROP_KEYED_BYTES, salt, (const uint8_t *)personal);
	crypto_generichash_blake2b_update(&st, &list, 1);
	crypto_generichash_blake2b_update(&st, hash, DROP_HASH_BYTES);
	crypto_generichash_blake2b_final(&st, out, DROP_KEYED_BYTES);
}
