/*
 * DROP identifiers (drop.h): standardization, hashing, the keyed form.
 */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "engine/drop.h"
#include "engine/record.h"
#include "engine/vault.h"

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
	enum keep keep;
	size_t last, first;	/* keep the last / first n (0: all) */
	bool no_leading_zeros;
	size_t min, max;	/* lengths after (max 0: DROP_STD_MAX - 1) */
	char stop;		/* what ends the value (ZIP+4's '-'), or 0 */
} fields[DROP_FIELDS] = {
	[DROP_F_EMAIL] = { KEEP_NON_SPACE, 0, 0, false, 3, 0, 0 },
	[DROP_F_PHONE] = { KEEP_DIGITS, 10, 0, false, 1, 0, 0 },
	[DROP_F_MAID] = { KEEP_HEX, 0, 0, false, 32, 32, 0 },
	[DROP_F_CTV_ID] = { KEEP_ALNUM, 0, 0, false, 8, 32, 0 },
	[DROP_F_VIN] = { KEEP_ALNUM, 0, 0, false, 17, 17, 0 },
	[DROP_F_FIRST_NAME] = { KEEP_NAME, 0, 0, false, 1, 0, 0 },
	[DROP_F_LAST_NAME] = { KEEP_NAME, 0, 0, false, 1, 0, 0 },
	[DROP_F_DOB] = { KEEP_DIGITS, 0, 0, false, 8, 8, 0 },
	/* ZIP+4 loses its +4 first: "02139-1234" -> 2139. */
	[DROP_F_ZIP] = { KEEP_ALNUM, 0, 5, true, 1, 5, '-' },
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

int
drop_list_parse(const char *name)
{
	for (int l = 0; l < DROP_LISTS; l++)
		if (strcasecmp(name, drop_lists[l].name) == 0)
			return l;
	return -1;
}

/* Whitespace, and the other controls (a NUL, DEL), which no email holds. */
static bool
is_space(unsigned char c)
{
	return c <= ' ' || c == 0x7f;
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
	char again[DROP_B64_BYTES];
	const char *end;
	size_t n;

	/* Canonical only: the whole text decoded, and encoding it back. */
	if (len != DROP_B64_BYTES - 1 || sodium_base642bin(hash,
	    DROP_HASH_BYTES, b64, len, NULL, &n, &end,
	    sodium_base64_VARIANT_ORIGINAL) != 0 || n != DROP_HASH_BYTES ||
	    end != b64 + len)
		return false;
	drop_b64(hash, again);
	return memcmp(again, b64, len) == 0;
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

/* ---------------------------------------------------------------- index */


bool
drop_enabled(const struct vault *v)
{
	for (size_t a = 0; a < v->schema->n_attrs; a++)
		if (v->schema->attrs[a].drop != DROP_F_NONE)
			return true;
	return false;
}

void
drop_forms_of(const struct vault *v, const struct value_list *l,
    struct drop_forms *out)
{
	const char *values[DROP_FIELDS] = { NULL };
	size_t lens[DROP_FIELDS] = { 0 };
	uint8_t hash[DROP_HASH_BYTES];

	memset(out, 0, sizeof(*out));
	for (size_t a = 0; a < v->schema->n_attrs; a++) {
		const struct attr_def *d = &v->schema->attrs[a];
		int e;

		if (d->drop == DROP_F_NONE || (e = record_values_find(l, d->name,
		    strlen(d->name))) < 0 || l->e[e].value == NULL)
			continue;
		values[d->drop] = (const char *)l->e[e].value;
		lens[d->drop] = l->e[e].len;
	}
	for (int i = 0; i < DROP_LISTS; i++) {
		if (!drop_hash((enum drop_list)i, values, lens, hash))
			continue;
		drop_keyed(keyring_index_key(v->kr), (enum drop_list)i, hash,
		    out->keyed[i]);
		out->present[i] = true;
	}
	sodium_memzero(hash, sizeof(hash));
}

static size_t
index_key(uint8_t *key, enum drop_list l, const uint8_t *keyed,
    const uint8_t *ref)
{
	key[0] = DROP_INDEX_KIND;
	key[1] = (uint8_t)l;
	memcpy(key + 2, keyed, DROP_KEYED_BYTES);
	if (ref == NULL)
		return 2 + DROP_KEYED_BYTES;
	memcpy(key + 2 + DROP_KEYED_BYTES, ref, CRYPTO_REF_BYTES);
	return DROP_INDEX_KEY_BYTES;
}

int
drop_index_update_txn(struct store_txn *txn, const uint8_t *ref,
    const struct drop_forms *old, const struct drop_forms *new)
{
	uint8_t key[DROP_INDEX_KEY_BYTES];
	int rc;

	for (int i = 0; i < DROP_LISTS; i++) {
		bool had = old != NULL && old->present[i];
		bool has = new != NULL && new->present[i];

		if (had && has && memcmp(old->keyed[i], new->keyed[i],
		    DROP_KEYED_BYTES) == 0)
			continue;
		if (had && (rc = store_del(txn, STORE_DROP, key, index_key(key,
		    (enum drop_list)i, old->keyed[i], ref), NULL, 0)) != 0 &&
		    rc != VAULT_ERR_NOT_FOUND)
			return rc;
		if (has && (rc = store_put(txn, STORE_DROP, key, index_key(key,
		    (enum drop_list)i, new->keyed[i], ref), "", 0, 0)) != 0)
			return rc;
	}
	return 0;
}

int
drop_lookup(struct vault *v, enum drop_list l,
    const uint8_t hash[DROP_HASH_BYTES], uint8_t (*refs)[32], size_t max,
    size_t *n)
{
	struct store_txn *txn = NULL;
	int r;

	*n = 0;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	r = drop_lookup_txn(v, txn, l, hash, refs, max, n);
	store_read_end(txn);
	return r;
}

int
drop_lookup_txn(struct vault *v, struct store_txn *txn, enum drop_list l,
    const uint8_t hash[DROP_HASH_BYTES], uint8_t (*refs)[32], size_t max,
    size_t *n)
{
	uint8_t keyed[DROP_KEYED_BYTES], prefix[DROP_INDEX_KEY_BYTES];
	struct store_val k, val;
	struct store_cursor *cur = NULL;
	size_t plen;
	int rc;

	*n = 0;
	drop_keyed(keyring_index_key(v->kr), l, hash, keyed);
	plen = index_key(prefix, l, keyed, NULL);
	if ((rc = store_cursor_open(txn, STORE_DROP, &cur)) != 0)
		return rc;
	k = (struct store_val){ plen, prefix };
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len != DROP_INDEX_KEY_BYTES ||
		    memcmp(k.data, prefix, plen) != 0)
			break;
		if (*n < max)
			memcpy(refs[*n], (const uint8_t *)k.data + plen,
			    CRYPTO_REF_BYTES);
		(*n)++;
	}
	store_cursor_close(cur);
	return rc == 0 || rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}

static size_t
mark_key(uint8_t *key, char kind, enum drop_list l, const uint8_t *keyed)
{
	key[0] = (uint8_t)kind;
	key[1] = (uint8_t)l;
	memcpy(key + 2, keyed, DROP_KEYED_BYTES);
	return DROP_MARK_KEY_BYTES;
}

int
drop_mark_txn(struct store_txn *txn, char kind, enum drop_list l,
    const uint8_t keyed[DROP_KEYED_BYTES], uint64_t at_ms)
{
	uint8_t key[DROP_MARK_KEY_BYTES], at[8];

	store_put_u64(at, at_ms);
	return store_put(txn, STORE_DROP, key, mark_key(key, kind, l, keyed),
	    at, sizeof(at), 0);
}

int
drop_mark_get(struct store_txn *txn, char kind, enum drop_list l,
    const uint8_t keyed[DROP_KEYED_BYTES], uint64_t *at_ms)
{
	uint8_t key[DROP_MARK_KEY_BYTES];
	struct store_val val;
	int rc;

	*at_ms = 0;
	rc = store_get(txn, STORE_DROP, key, mark_key(key, kind, l, keyed),
	    &val);
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (val.len != 8)
		return VAULT_ERR_STATE;
	*at_ms = store_get_u64(val.data);
	return 0;
}

int
drop_suppressed_txn(struct vault *v, struct store_txn *txn,
    const struct drop_forms *old, const struct drop_forms *new,
    uint64_t now_ms, bool *hit)
{
	uint64_t keep = (uint64_t)v->cfg->drop_suppression_days * 86400000ULL;
	uint64_t at;
	int r;

	*hit = false;
	for (int i = 0; i < DROP_LISTS && !*hit; i++) {
		if (!new->present[i] || (old != NULL && old->present[i] &&
		    memcmp(old->keyed[i], new->keyed[i], DROP_KEYED_BYTES) == 0))
			continue;
		if ((r = drop_mark_get(txn, DROP_SUPPRESS_KIND,
		    (enum drop_list)i, new->keyed[i], &at)) != 0)
			return r;
		*hit = at != 0 && now_ms - at < keep;
	}
	return 0;
}
