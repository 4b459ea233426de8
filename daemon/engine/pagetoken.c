#include <string.h>

#include <sodium.h>

#include "engine/pagetoken.h"
#include "store/store.h"

#define POS_BYTES (8 + CRYPTO_REF_BYTES)
#define TOKEN_BYTES (POS_BYTES + CRYPTO_OVERHEAD)

_Static_assert(sodium_base64_ENCODED_LEN(TOKEN_BYTES,
    sodium_base64_VARIANT_URLSAFE_NO_PADDING) <= PAGETOKEN_CHARS,
    "a token fits PAGETOKEN_CHARS");

int
pagetoken_encode(const uint8_t key[CRYPTO_KEY_BYTES],
    const struct fetch_pos *pos, const uint8_t bind[PAGETOKEN_BIND_BYTES],
    char out[PAGETOKEN_CHARS])
{
	uint8_t plain[POS_BYTES], blob[TOKEN_BYTES];
	int r;

	store_put_u64(plain, pos->order);
	memcpy(plain + 8, pos->ref, CRYPTO_REF_BYTES);
	r = crypto_seal(key, PAGETOKEN_VERSION, bind, PAGETOKEN_BIND_BYTES,
	    plain, sizeof(plain), blob, sizeof(blob));
	sodium_memzero(plain, sizeof(plain));
	if (r != 0)
		return r;
	sodium_bin2base64(out, PAGETOKEN_CHARS, blob, sizeof(blob),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return 0;
}

int
pagetoken_decode(const uint8_t key[CRYPTO_KEY_BYTES], const char *tok,
    const uint8_t bind[PAGETOKEN_BIND_BYTES], struct fetch_pos *pos,
    const char **why)
{
	uint8_t blob[TOKEN_BYTES], plain[POS_BYTES];
	uint32_t version;
	size_t n = 0, len;

	if (sodium_base642bin(blob, sizeof(blob), tok, strlen(tok), NULL, &n,
	    NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    n != sizeof(blob) || crypto_blob_version(blob, n, &version) != 0 ||
	    version != PAGETOKEN_VERSION) {
		*why = "page_token: malformed";
		return VAULT_ERR_INVALID;
	}
	if (crypto_open(key, bind, PAGETOKEN_BIND_BYTES, blob, n, plain,
	    sizeof(plain), &len) != 0 || len != sizeof(plain)) {
		*why = "page_token: not a token of this query (it was changed, "
		    "or purpose, dataset_id, attributes, caller or schema differ)";
		return VAULT_ERR_INVALID;
	}
	pos->order = store_get_u64(plain);
	memcpy(pos->ref, plain + 8, CRYPTO_REF_BYTES);
	sodium_memzero(plain, sizeof(plain));
	return 0;
}
