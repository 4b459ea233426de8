#include <string.h>

#include <sodium.h>

#include "log.h"
#include "record.h"
#include "store.h"

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
record_parse_consumer(const MDB_val *v, struct consumer_rec *rec)
{
	const uint8_t *p = v->mv_data;

	if (v->mv_size != RECORD_CONSUMER_BYTES || p[0] != RECORD_FORMAT) {
		log_error("a consumer record has an unknown format");
		return VAULT_ERR_STATE;
	}
	rec->master_version = store_get_u32(p + 1);
	rec->dek_generation = store_get_u32(p + 5);
	rec->created_ms = store_get_u64(p + 9);
	rec->wrapped_dek = p + RECORD_CONSUMER_HDR;
	rec->sealed_seed = rec->wrapped_dek + RECORD_SEALED_KEY_BYTES;
	return 0;
}

int
record_wrap_dek(const struct keyring *kr, const uint8_t *ref, uint32_t version,
    const uint8_t *dek, uint8_t *out)
{
	uint8_t ad[CRYPTO_REF_BYTES + 8];
	const uint8_t *master = keyring_master(kr, version);

	if (master == NULL)
		return VAULT_ERR_KEY;
	return crypto_seal(master, version, ad, bound_ad(ad, ref, "dek", version),
	    dek, CRYPTO_KEY_BYTES, out, RECORD_SEALED_KEY_BYTES);
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
	uint8_t *wrapped = out + RECORD_CONSUMER_HDR;
	int r;

	randombytes_buf(dek, CRYPTO_KEY_BYTES);
	randombytes_buf(seed, CRYPTO_KEY_BYTES);
	out[0] = RECORD_FORMAT;
	store_put_u32(out + 1, ver);
	store_put_u32(out + 5, 1);
	store_put_u64(out + 9, store_now_ms());
	if ((r = record_wrap_dek(kr, ref, ver, dek, wrapped)) != 0)
		return r;
	return record_seal_seed(dek, ref, 1, seed, wrapped + RECORD_SEALED_KEY_BYTES);
}

int
record_unwrap_dek(const struct keyring *kr, const uint8_t *ref,
    const struct consumer_rec *rec, uint8_t *dek)
{
	uint8_t ad[CRYPTO_REF_BYTES + 8];
	const uint8_t *master = keyring_master(kr, rec->master_version);
	size_t n;

	if (master == NULL) {
		log_error("a consumer's DEK is wrapped under master key version "
		    "%u, which is not loaded", rec->master_version);
		return VAULT_ERR_KEY;
	}
	if (crypto_open(master, ad, bound_ad(ad, ref, "dek", rec->master_version),
	    rec->wrapped_dek, RECORD_SEALED_KEY_BYTES, dek, CRYPTO_KEY_BYTES,
	    &n) != 0 || n != CRYPTO_KEY_BYTES) {
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
	store_put_u64(out + 1, now_ms);
	store_put_u64(out + 9, 0);
	*out_len = RECORD_ATTR_HDR + len + CRYPTO_OVERHEAD;
	return crypto_seal(dek, generation, ad, bound_ad(ad, ref, name,
	    generation), (const uint8_t *)value, len, out + RECORD_ATTR_HDR,
	    RECORD_ATTR_MAX - RECORD_ATTR_HDR);
}

int
record_open_attr(const uint8_t *dek, const uint8_t *ref, const char *name,
    uint32_t generation, const MDB_val *v, uint8_t *out, size_t cap,
    size_t *len, uint64_t *updated_ms)
{
	uint8_t ad[CRYPTO_REF_BYTES + SCHEMA_NAME_MAX + 4];
	const uint8_t *p = v->mv_data;
	int r;

	if (v->mv_size < RECORD_ATTR_HDR + CRYPTO_OVERHEAD || p[0] != RECORD_FORMAT) {
		log_error("an attribute record has an unknown format");
		return VAULT_ERR_STATE;
	}
	if (cap < v->mv_size - RECORD_ATTR_HDR - CRYPTO_OVERHEAD + 1)
		return VAULT_ERR_INVALID;
	if ((r = crypto_open(dek, ad, bound_ad(ad, ref, name, generation),
	    p + RECORD_ATTR_HDR, v->mv_size - RECORD_ATTR_HDR, out, cap - 1,
	    len)) != 0) {
		log_error("an attribute value failed to open: the store is "
		    "corrupt or was tampered with");
		return r;
	}
	out[*len] = '\0';
	if (updated_ms != NULL)
		*updated_ms = store_get_u64(p + 1);
	return 0;
}
