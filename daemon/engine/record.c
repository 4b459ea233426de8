#include <string.h>

#include <sodium.h>

#include "util/log.h"
#include "engine/record.h"
#include "store/store.h"

/* ref | label | be32 n */
static size_t
bound_ad(uint8_t *ad, const uint8_t *ref, const char *label, uint32_t n)
{
	size_t len = strlen(label);

	memcpy(ad, ref, CRYPTO_REF_BYTES);
	memcpy(ad + CRYPTO_REF_BYTES, label, len);
	store_put_u32(ad + CRYPTO_REF_BYTES + len, n);
	return CRYPTO_REF_BYTES + len + 4;
}

int
record_parse_consumer(const struct store_val *v, struct consumer_rec *rec)
{
	const uint8_t *p = v->data;

	/* Damage, not a state the caller can fix: DATA_LOSS at the boundary. */
	if (v->len != RECORD_CONSUMER_BYTES || p[0] < RECORD_FORMAT ||
	    p[0] > RECORD_CONSUMER_BOUND) {
		log_error("a consumer record has an unknown format");
		return VAULT_ERR_CRYPTO;
	}
	rec->format = p[0];
	rec->has_manifest = p[0] == RECORD_CONSUMER_MANIFEST;
	rec->one_record = p[0] >= RECORD_CONSUMER_VALUES;
	rec->hdr = p;
	rec->master_version = store_get_u32(p + RECORD_CONSUMER_MASTER);
	rec->dek_generation = store_get_u32(p + RECORD_CONSUMER_GEN);
	rec->created_ms = store_get_u64(p + RECORD_CONSUMER_CREATED);
	rec->wrapped_dek = p + RECORD_CONSUMER_HDR;
	rec->sealed_seed = rec->wrapped_dek + RECORD_SEALED_KEY_BYTES;
	return 0;
}

/* The wrapped DEK's AD: ref | "dek" | version [| header, format 4]. */
static size_t
dek_ad(uint8_t *ad, const uint8_t *ref, const uint8_t *hdr)
{
	size_t n = bound_ad(ad, ref, "dek",
	    store_get_u32(hdr + RECORD_CONSUMER_MASTER));

	if (hdr[0] < RECORD_CONSUMER_BOUND)
		return n;
	memcpy(ad + n, hdr, RECORD_CONSUMER_HDR);
	return n + RECORD_CONSUMER_HDR;
}

#define DEK_AD_MAX (CRYPTO_REF_BYTES + 8 + RECORD_CONSUMER_HDR)

int
record_wrap_dek(const struct keyring *kr, const uint8_t *ref,
    const uint8_t *dek, uint8_t *rec)
{
	uint8_t ad[DEK_AD_MAX];
	uint32_t version = store_get_u32(rec + RECORD_CONSUMER_MASTER);
	const uint8_t *master = keyring_master(kr, version);

	if (master == NULL)
		return VAULT_ERR_KEY;
	return crypto_seal(master, version, ad, dek_ad(ad, ref, rec), dek,
	    CRYPTO_KEY_BYTES, rec + RECORD_CONSUMER_HDR, RECORD_SEALED_KEY_BYTES);
}

int
record_seal_seed(const uint8_t *dek, const uint8_t *ref, uint32_t generation,
    const uint8_t *seed, uint8_t *out)
{
	uint8_t ad[CRYPTO_REF_BYTES + 8];

	return crypto_seal(dek, generation, ad, bound_ad(ad, ref, "seed",
	    generation), seed, CRYPTO_KEY_BYTES, out, RECORD_SEALED_KEY_BYTES);
}

int
record_new_consumer(const struct keyring *kr, const uint8_t *ref, uint8_t *dek,
    uint8_t *seed, uint8_t out[RECORD_CONSUMER_BYTES])
{
	uint32_t ver = keyring_active_version(kr);
	int r;

	randombytes_buf(dek, CRYPTO_KEY_BYTES);
	randombytes_buf(seed, CRYPTO_KEY_BYTES);
	out[0] = RECORD_CONSUMER_BOUND;
	store_put_u32(out + RECORD_CONSUMER_MASTER, ver);
	store_put_u32(out + RECORD_CONSUMER_GEN, 1);
	store_put_u64(out + RECORD_CONSUMER_CREATED, store_now_ms());
	if ((r = record_wrap_dek(kr, ref, dek, out)) != 0)
		return r;
	return record_seal_seed(dek, ref, 1, seed,
	    out + RECORD_CONSUMER_HDR + RECORD_SEALED_KEY_BYTES);
}

int
record_unwrap_dek(const struct keyring *kr, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec, uint8_t *dek)
{
	uint8_t ad[DEK_AD_MAX];
	const uint8_t *master;
	size_t n;
	int r;

	/* Another replica may have rewrapped it under a version new here. */
	if ((r = keyring_master_load(kr, txn, rec->master_version,
	    &master)) != 0)
		return r;
	if (master == NULL) {
		log_error("a consumer's DEK is wrapped under master key version "
		    "%u, which is not loaded", rec->master_version);
		return VAULT_ERR_KEY;
	}
	if (crypto_open(master, ad, dek_ad(ad, ref, rec->hdr), rec->wrapped_dek,
	    RECORD_SEALED_KEY_BYTES, dek, CRYPTO_KEY_BYTES, &n) != 0 || n != CRYPTO_KEY_BYTES) {
		log_error("a wrapped DEK failed to open: the store is corrupt "
		    "or was tampered with");
		return VAULT_ERR_CRYPTO;
	}
	return 0;
}

int
record_open_seed(const uint8_t *dek, const uint8_t *ref,
    const struct consumer_rec *rec, uint8_t *seed)
{
	uint8_t ad[CRYPTO_REF_BYTES + 8];
	size_t n;

	if (crypto_open(dek, ad, bound_ad(ad, ref, "seed", rec->dek_generation),
	    rec->sealed_seed, RECORD_SEALED_KEY_BYTES, seed, CRYPTO_KEY_BYTES,
	    &n) != 0 || n != CRYPTO_KEY_BYTES) {
		log_error("a pseudonym seed failed to open: the store is corrupt "
		    "or was tampered with");
		return VAULT_ERR_CRYPTO;
	}
	return 0;
}

size_t
record_attr_key(uint8_t *key, const uint8_t *ref, const char *name)
{
	size_t n = strlen(name);

	memcpy(key, ref, CRYPTO_REF_BYTES);
	memcpy(key + CRYPTO_REF_BYTES, name, n);
	return CRYPTO_REF_BYTES + n;
}

int
record_seal_attr(const uint8_t *dek, const uint8_t *ref, const char *name,
    uint32_t generation, const char *value, size_t len, uint64_t now_ms,
    uint8_t *out, size_t *out_len)
{
	uint8_t ad[CRYPTO_REF_BYTES + SCHEMA_NAME_MAX + 4];

	if (len > SCHEMA_VALUE_MAX)
		return VAULT_ERR_INVALID;
	out[0] = RECORD_FORMAT;
	store_put_u64(out + RECORD_ATTR_UPDATED, now_ms);
	store_put_u64(out + RECORD_ATTR_EXPIRES, 0);
	*out_len = RECORD_ATTR_HDR + len + CRYPTO_OVERHEAD;
	return crypto_seal(dek, generation, ad, bound_ad(ad, ref, name,
	    generation), (const uint8_t *)value, len, out + RECORD_ATTR_HDR,
	    RECORD_ATTR_MAX - RECORD_ATTR_HDR);
}

int
record_open_attr(const uint8_t *dek, const uint8_t *ref, const char *name,
    uint32_t generation, const struct store_val *v, uint8_t *out, size_t cap,
    size_t *len, uint64_t *updated_ms)
{
	uint8_t ad[CRYPTO_REF_BYTES + SCHEMA_NAME_MAX + 4];
	const uint8_t *p = v->data;
	int r;

	/*
	 * The store keeps no checksums: a damaged record can claim any
	 * length, and reading past the file's end would kill the process
	 * (SIGBUS). No record longer than its largest possible size is read.
	 */
	if (v->len < RECORD_ATTR_HDR + CRYPTO_OVERHEAD ||
	    v->len > RECORD_ATTR_MAX || p[0] != RECORD_FORMAT) {
		log_error("an attribute record has an unknown format");
		return VAULT_ERR_CRYPTO;
	}
	if (cap < v->len - RECORD_ATTR_HDR - CRYPTO_OVERHEAD + 1)
		return VAULT_ERR_INVALID;
	if ((r = crypto_open(dek, ad, bound_ad(ad, ref, name, generation),
	    p + RECORD_ATTR_HDR, v->len - RECORD_ATTR_HDR, out, cap - 1,
	    len)) != 0) {
		log_error("an attribute value failed to open: the store is "
		    "corrupt or was tampered with");
		return r;
	}
	out[*len] = '\0';
	if (updated_ms != NULL)
		*updated_ms = store_get_u64(p + RECORD_ATTR_UPDATED);
	return 0;
}

uint64_t
record_attr_updated(const struct store_val *v)
{
	if (v->len < RECORD_ATTR_HDR)
		return 0;
	return store_get_u64((const uint8_t *)v->data + RECORD_ATTR_UPDATED);
}

/* Where the first entry starts in a struct manifest, whose p is the count. */
#define FIRST_IN_M (RECORD_MANIFEST_FIRST - RECORD_MANIFEST_COUNT)

static const char manifest_personal[crypto_generichash_blake2b_PERSONALBYTES] =
    "vaultd-manifest";

/* Keyed BLAKE2b-256 under the index key over ref | p (personal: the kind). */
static void
ref_tag(const char *personal, const uint8_t *index_key, const uint8_t *ref,
    const uint8_t *p, size_t len, uint8_t tag[RECORD_MANIFEST_TAG])
{
	crypto_generichash_blake2b_state st;
	static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];

	crypto_generichash_blake2b_init_salt_personal(&st, index_key,
	    CRYPTO_KEY_BYTES, RECORD_MANIFEST_TAG, salt,
	    (const uint8_t *)personal);
	crypto_generichash_blake2b_update(&st, ref, CRYPTO_REF_BYTES);
	crypto_generichash_blake2b_update(&st, p, len);
	crypto_generichash_blake2b_final(&st, tag, RECORD_MANIFEST_TAG);
	sodium_memzero(&st, sizeof(st));
}

/* The store's key order (store.h): bytes, then the shorter first. */
static int
name_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

int
record_manifest_open(const uint8_t *index_key, const uint8_t *ref,
    const struct store_val *v, struct manifest *m)
{
	const uint8_t *p = v->data, *e;
	uint8_t tag[RECORD_MANIFEST_TAG];
	size_t body, off, n, i;

	if (v->len < RECORD_MANIFEST_FIRST + RECORD_MANIFEST_TAG ||
	    v->len > RECORD_MANIFEST_MAX ||
	    p[0] != RECORD_MANIFEST_FORMAT)
		goto bad;
	body = v->len - RECORD_MANIFEST_TAG;
	ref_tag(manifest_personal, index_key, ref, p, body, tag);
	if (sodium_memcmp(tag, p + body, RECORD_MANIFEST_TAG) != 0)
		goto bad;
	n = (size_t)p[RECORD_MANIFEST_COUNT] << 8 | p[RECORD_MANIFEST_COUNT + 1];
	for (i = 0, off = RECORD_MANIFEST_FIRST, e = NULL; i < n; i++) {
		if (off >= body || p[off] == 0 || p[off] >= SCHEMA_NAME_MAX ||
		    off + RECORD_MANIFEST_ENTRY_BYTES(p[off]) > body)
			goto bad;
		if (e != NULL && name_cmp(e + RECORD_MANIFEST_ENTRY_NAME, e[0],
		    p + off + RECORD_MANIFEST_ENTRY_NAME, p[off]) >= 0)
			goto bad;
		e = p + off;
		off += RECORD_MANIFEST_ENTRY_BYTES(p[off]);
	}
	if (off != body)
		goto bad;
	*m = (struct manifest){ p + RECORD_MANIFEST_COUNT,
	    body - RECORD_MANIFEST_COUNT, n };
	return 0;
bad:
	log_error("a consumer's manifest failed its integrity check: the store "
	    "is corrupt or was tampered with");
	return VAULT_ERR_CRYPTO;
}

int
record_manifest_find(const struct manifest *m, const char *name, size_t len,
    uint64_t *updated)
{
	size_t off = FIRST_IN_M;

	for (size_t i = 0; i < m->n; i++) {
		const uint8_t *e = m->p + off;
		size_t nl = e[0];

		if (nl == len && memcmp(e + RECORD_MANIFEST_ENTRY_NAME, name,
		    len) == 0) {
			*updated = store_get_u64(e + RECORD_MANIFEST_ENTRY_UPDATED(nl));
			return 0;
		}
		off += RECORD_MANIFEST_ENTRY_BYTES(nl);
	}
	return VAULT_ERR_NOT_FOUND;
}

int
record_manifest_entries(const struct manifest *m, struct manifest_entry *e,
    size_t cap, size_t *n)
{
	size_t off = FIRST_IN_M;

	if (m->n > cap)
		return VAULT_ERR_LIMIT;
	for (size_t i = 0; i < m->n; i++) {
		const uint8_t *p = m->p + off;

		e[i].len = p[0];
		memcpy(e[i].name, p + RECORD_MANIFEST_ENTRY_NAME, e[i].len);
		e[i].updated = store_get_u64(p +
		    RECORD_MANIFEST_ENTRY_UPDATED(e[i].len));
		off += RECORD_MANIFEST_ENTRY_BYTES(e[i].len);
	}
	*n = m->n;
	return 0;
}

int
record_manifest_set(struct manifest_entry *e, size_t *n, size_t cap,
    const char *name, size_t len, uint64_t updated)
{
	size_t i;
	int c = 1;

	if (len == 0 || len >= SCHEMA_NAME_MAX)
		return VAULT_ERR_INVALID;
	for (i = 0; i < *n; i++)
		if ((c = name_cmp(e[i].name, e[i].len, (const uint8_t *)name,
		    len)) >= 0)
			break;
	if (i < *n && c == 0) {
		e[i].updated = updated;
		return 0;
	}
	if (*n == cap)
		return VAULT_ERR_LIMIT;
	memmove(e + i + 1, e + i, (*n - i) * sizeof(*e));
	memcpy(e[i].name, name, len);
	e[i].len = len;
	e[i].updated = updated;
	(*n)++;
	return 0;
}

size_t
record_manifest_seal(const uint8_t *index_key, const uint8_t *ref,
    const struct manifest_entry *e, size_t n, uint8_t *out)
{
	size_t off = RECORD_MANIFEST_FIRST;

	out[0] = RECORD_MANIFEST_FORMAT;
	out[RECORD_MANIFEST_COUNT] = (uint8_t)(n >> 8);
	out[RECORD_MANIFEST_COUNT + 1] = (uint8_t)n;
	for (size_t i = 0; i < n; i++) {
		out[off] = (uint8_t)e[i].len;
		memcpy(out + off + RECORD_MANIFEST_ENTRY_NAME, e[i].name, e[i].len);
		store_put_u64(out + off + RECORD_MANIFEST_ENTRY_UPDATED(e[i].len),
		    e[i].updated);
		off += RECORD_MANIFEST_ENTRY_BYTES(e[i].len);
	}
	ref_tag(manifest_personal, index_key, ref, out, off, out + off);
	return off + RECORD_MANIFEST_TAG;
}

/*
 * AD of a values record's blob: ref | "values" | generation | BLAKE2b-256
 * of the bytes before the blob (names, times, lengths), which can be far
 * longer than an AD.
 */
static size_t
values_ad(uint8_t *ad, const uint8_t *ref, uint32_t generation,
    const uint8_t *head, size_t head_len)
{
	size_t n = bound_ad(ad, ref, "values", generation);

	crypto_generichash(ad + n, 32, head, head_len, NULL, 0);
	return n + 32;
}

int
record_values_names(const struct store_val *v, struct value_list *l,
    struct store_val *sealed)
{
	const uint8_t *p = v->data;
	size_t off, n, total = 0;

	l->n = 0;
	if (v->len < RECORD_VALUES_FIRST + CRYPTO_OVERHEAD ||
	    v->len > RECORD_VALUES_MAX || p[0] != RECORD_VALUES_FORMAT)
		goto bad;
	n = (size_t)p[1] << 8 | p[2];
	if (n > RECORD_VALUES_ENTRIES)
		goto bad;
	for (off = RECORD_VALUES_FIRST; l->n < n; l->n++) {
		struct value_entry *e = &l->e[l->n];
		size_t nl;

		if (off >= v->len || (nl = p[off]) == 0 || nl >= SCHEMA_NAME_MAX ||
		    v->len - off < RECORD_VALUES_ENTRY_BYTES(nl))
			goto bad;
		*e = (struct value_entry){ p + off + 1, nl,
		    store_get_u64(p + off + 1 + nl), NULL,
		    (size_t)p[off + 9 + nl] << 8 | p[off + 10 + nl], { 0, NULL } };
		if (e->len > SCHEMA_VALUE_MAX || (l->n > 0 &&
		    name_cmp(l->e[l->n - 1].name, l->e[l->n - 1].name_len,
		    e->name, nl) >= 0))
			goto bad;
		total += e->len + 1;	/* each value NUL-terminated */
		off += RECORD_VALUES_ENTRY_BYTES(nl);
	}
	if (v->len - off != total + CRYPTO_OVERHEAD)
		goto bad;
	*sealed = (struct store_val){ v->len - off, (void *)(p + off) };
	return 0;
bad:
	l->n = 0;
	log_error("a consumer's values record has an unknown format: the store "
	    "is corrupt or was tampered with");
	return VAULT_ERR_CRYPTO;
}

int
record_values_open(const uint8_t *dek, const uint8_t *ref, uint32_t generation,
    const struct store_val *v, uint8_t *plain, size_t cap,
    struct value_list *l)
{
	uint8_t ad[CRYPTO_REF_BYTES + 16 + 32];
	struct store_val sealed;
	size_t len, off = 0;
	int r;

	if ((r = record_values_names(v, l, &sealed)) != 0)
		return r;
	if (cap < sealed.len - CRYPTO_OVERHEAD)
		return VAULT_ERR_INVALID;
	if (crypto_open(dek, ad, values_ad(ad, ref, generation, v->data,
	    v->len - sealed.len), sealed.data, sealed.len, plain, cap,
	    &len) != 0) {
		l->n = 0;
		log_error("a consumer's values record failed to open: the store "
		    "is corrupt or was tampered with");
		return VAULT_ERR_CRYPTO;
	}
	for (size_t i = 0; i < l->n; i++) {
		l->e[i].value = plain + off;
		off += l->e[i].len + 1;
		if (plain[off - 1] != '\0') {
			l->n = 0;
			log_error("a consumer's values record is malformed");
			return VAULT_ERR_CRYPTO;
		}
	}
	return 0;
}

size_t
record_values_size(const struct value_list *l)
{
	size_t n = RECORD_VALUES_FIRST + CRYPTO_OVERHEAD;

	for (size_t i = 0; i < l->n; i++)
		n += RECORD_VALUES_ENTRY_BYTES(l->e[i].name_len) + l->e[i].len + 1;
	return n;
}

int
record_values_seal(const uint8_t *dek, const uint8_t *ref, uint32_t generation,
    const struct value_list *l, uint8_t *out)
{
	uint8_t ad[CRYPTO_REF_BYTES + 16 + 32];
	size_t off = RECORD_VALUES_FIRST, vals, total = 0;
	uint8_t *plain;
	int r;

	out[0] = RECORD_VALUES_FORMAT;
	out[1] = (uint8_t)(l->n >> 8);
	out[2] = (uint8_t)l->n;
	for (size_t i = 0; i < l->n; i++) {
		const struct value_entry *e = &l->e[i];

		out[off] = (uint8_t)e->name_len;
		memcpy(out + off + 1, e->name, e->name_len);
		store_put_u64(out + off + 1 + e->name_len, e->updated_ms);
		out[off + 9 + e->name_len] = (uint8_t)(e->len >> 8);
		out[off + 10 + e->name_len] = (uint8_t)e->len;
		off += RECORD_VALUES_ENTRY_BYTES(e->name_len);
		total += e->len + 1;
	}
	/* The values one after another, each NUL-terminated, locked while plain. */
	if ((plain = crypto_scratch_slot(CRYPTO_SCRATCH_SEAL,
	    total ? total : 1)) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0, at = 0; i < l->n; i++) {
		if (l->e[i].len > 0)
			memcpy(plain + at, l->e[i].value, l->e[i].len);
		plain[at + l->e[i].len] = '\0';
		at += l->e[i].len + 1;
	}
	vals = off;
	r = crypto_seal(dek, generation, ad, values_ad(ad, ref, generation, out,
	    vals), plain, total, out + vals, total + CRYPTO_OVERHEAD);
	sodium_memzero(plain, total);
	return r;
}

/* Where name is in l, or would go: *found says which. */
static size_t
values_place(const struct value_list *l, const uint8_t *name, size_t len,
    bool *found)
{
	size_t lo = 0, hi = l->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = name_cmp(l->e[mid].name, l->e[mid].name_len, name, len);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int
record_values_find(const struct value_list *l, const char *name, size_t len)
{
	bool found;
	size_t i = values_place(l, (const uint8_t *)name, len, &found);

	return found ? (int)i : -1;
}

int
record_values_set(struct value_list *l, const uint8_t *name, size_t len,
    uint64_t updated_ms, const uint8_t *value, size_t value_len)
{
	bool found;
	size_t i;

	if (len == 0 || len >= SCHEMA_NAME_MAX || value_len > SCHEMA_VALUE_MAX)
		return VAULT_ERR_INVALID;
	i = values_place(l, name, len, &found);
	if (!found) {
		if (l->n == RECORD_VALUES_ENTRIES)
			return VAULT_ERR_LIMIT;
		memmove(l->e + i + 1, l->e + i, (l->n - i) * sizeof(l->e[0]));
		l->n++;
	}
	l->e[i] = (struct value_entry){ name, len, updated_ms, value,
	    value_len, { 0, NULL } };
	return 0;
}

void
record_values_remove(struct value_list *l, size_t i)
{
	if (i >= l->n)
		return;
	memmove(l->e + i, l->e + i + 1, (l->n - i - 1) * sizeof(l->e[0]));
	l->n--;
}
