#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

#define KCV_CONTEXT "vaultd key check value v1"

static void register_fork_handler(void);
static int fork_handler_rc;

int
crypto_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	if (sodium_init() < 0)
		return VAULT_ERR_INTERNAL;
	/* A forked child must not hand out its parent's nonces again. */
	if (pthread_once(&once, register_fork_handler) != 0 ||
	    fork_handler_rc != 0)
		return VAULT_ERR_INTERNAL;
	return 0;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Nonces come from a per-thread pool: 4 KiB of ChaCha20 output under a
 * fresh random seed, so one getrandom(2) serves 170 seals instead of one
 * each (a rotation spent more time in that syscall than in the cipher).
 * Nonces are public; each byte of a pool is handed out once, and a forked
 * child (dev mode's system(), a PKCS#11 module's helpers) starts a pool of
 * its own.
 */
#define NONCE_POOL 4096

static _Thread_local struct {
	uint8_t buf[NONCE_POOL];
	size_t used;
} nonces = { .used = NONCE_POOL };

static void
next_nonce(uint8_t *out)
{
	uint8_t seed[randombytes_SEEDBYTES];

	if (nonces.used + CRYPTO_NONCE_BYTES > NONCE_POOL) {
		randombytes_buf(seed, sizeof(seed));
		randombytes_buf_deterministic(nonces.buf, NONCE_POOL, seed);
		sodium_memzero(seed, sizeof(seed));
		nonces.used = 0;
	}
	memcpy(out, nonces.buf + nonces.used, CRYPTO_NONCE_BYTES);
	nonces.used += CRYPTO_NONCE_BYTES;
}

/* The child has one thread, the one that forked: its pool is dropped. */
static void
after_fork_child(void)
{
	nonces.used = NONCE_POOL;
}

static void
register_fork_handler(void)
{
	fork_handler_rc = pthread_atfork(NULL, NULL, after_fork_child);
}

/* Full associated data: the caller's context, then the blob's header bytes. */
static int
build_ad(uint8_t *buf, const uint8_t *ad, size_t ad_len, const uint8_t *header)
{
	if (ad_len > CRYPTO_MAX_AD)
		return VAULT_ERR_INVALID;
	if (ad_len > 0)
		memcpy(buf, ad, ad_len);
	memcpy(buf + ad_len, header, CRYPTO_BLOB_AD_HEADER);
	return 0;
}

int
crypto_seal(const uint8_t key[CRYPTO_KEY_BYTES], uint32_t key_version,
    const uint8_t *ad, size_t ad_len, const uint8_t *plain, size_t plain_len,
    uint8_t *out, size_t out_cap)
{
	uint8_t full_ad[CRYPTO_MAX_AD + CRYPTO_BLOB_AD_HEADER];
	int r;

	if (out_cap < plain_len + CRYPTO_OVERHEAD)
		return VAULT_ERR_INVALID;
	out[CRYPTO_BLOB_FMT] = CRYPTO_FORMAT_V1;
	put_be32(out + CRYPTO_BLOB_VERSION, key_version);
	next_nonce(out + CRYPTO_BLOB_NONCE);
	if ((r = build_ad(full_ad, ad, ad_len, out)) != 0)
		return r;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + CRYPTO_HEADER_BYTES,
	    NULL, plain, plain_len, full_ad, ad_len + CRYPTO_BLOB_AD_HEADER, NULL,
	    out + CRYPTO_BLOB_NONCE, key);
	return 0;
}

int
crypto_open(const uint8_t key[CRYPTO_KEY_BYTES], const uint8_t *ad,
    size_t ad_len, const uint8_t *blob, size_t blob_len, uint8_t *out,
    size_t out_cap, size_t *plain_len)
{
	uint8_t full_ad[CRYPTO_MAX_AD + CRYPTO_BLOB_AD_HEADER];
	unsigned long long n = 0;
	int r;

	*plain_len = 0;
	if (blob_len < CRYPTO_OVERHEAD || blob[CRYPTO_BLOB_FMT] != CRYPTO_FORMAT_V1)
		return VAULT_ERR_CRYPTO;
	if (out_cap < blob_len - CRYPTO_OVERHEAD)
		return VAULT_ERR_INVALID;
	if ((r = build_ad(full_ad, ad, ad_len, blob)) != 0)
		return r;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &n, NULL,
	    blob + CRYPTO_HEADER_BYTES, blob_len - CRYPTO_HEADER_BYTES,
	    full_ad, ad_len + CRYPTO_BLOB_AD_HEADER, blob + CRYPTO_BLOB_NONCE,
	    key) != 0) {
		sodium_memzero(out, out_cap);
		return VAULT_ERR_CRYPTO;
	}
	*plain_len = (size_t)n;
	return 0;
}

int
crypto_blob_version(const uint8_t *blob, size_t blob_len, uint32_t *version)
{
	const uint8_t *p = blob + CRYPTO_BLOB_VERSION;

	if (blob_len < CRYPTO_OVERHEAD)
		return VAULT_ERR_INVALID;
	*version = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	return 0;
}

void
crypto_consumer_ref(const uint8_t index_key[CRYPTO_KEY_BYTES], const char *id,
    size_t id_len, uint8_t ref[CRYPTO_REF_BYTES])
{
	crypto_generichash(ref, CRYPTO_REF_BYTES, (const uint8_t *)id, id_len,
	    index_key, CRYPTO_KEY_BYTES);
}

void
crypto_key_check_value(const uint8_t key[CRYPTO_KEY_BYTES],
    uint8_t kcv[CRYPTO_KCV_BYTES])
{
	crypto_generichash(kcv, CRYPTO_KCV_BYTES, (const uint8_t *)KCV_CONTEXT,
	    sizeof(KCV_CONTEXT) - 1, key, CRYPTO_KEY_BYTES);
}

void *
crypto_secret_alloc(size_t len)
{
	return sodium_malloc(len);
}

void
crypto_secret_free(void *p)
{
	if (p != NULL)
		sodium_free(p);
}

int
crypto_secret_reserve(uint8_t **p, size_t *cap, size_t need)
{
	size_t want = need < 4096 ? 4096 : need;

	if (*p != NULL && *cap >= need)
		return 0;
	crypto_secret_free(*p);
	*cap = 0;
	if ((*p = crypto_secret_alloc(want)) == NULL)
		return VAULT_ERR_NOMEM;
	*cap = want;
	return 0;
}

void
crypto_hex(const uint8_t *bin, size_t len, char *out)
{
	sodium_bin2hex(out, len * 2 + 1, bin, len);
}

int
crypto_check_mlock(void)
{
	uint8_t probe[64];
	int r = sodium_mlock(probe, sizeof(probe));

	if (r == 0)
		sodium_munlock(probe, sizeof(probe));
	return r == 0 ? 0 : VAULT_ERR_NOMEM;
}

/*
 * Locked scratch regions per thread, one per slot, kept between calls:
 * sodium_malloc costs several system calls, too many for every read.
 */
struct scratch {
	uint8_t *mem[CRYPTO_SCRATCH_SLOTS];
	size_t len[CRYPTO_SCRATCH_SLOTS];
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void
scratch_free(void *p)
{
	struct scratch *s = p;

	for (int i = 0; i < CRYPTO_SCRATCH_SLOTS; i++)
		sodium_free(s->mem[i]);
	free(s);
}

static void
scratch_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

uint8_t *
crypto_scratch_slot(int slot, size_t len)
{
	struct scratch *s;

	if (slot < 0 || slot >= CRYPTO_SCRATCH_SLOTS)
		return NULL;
	pthread_once(&scratch_once, scratch_init);
	if ((s = pthread_getspecific(scratch_key)) == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return NULL;
		pthread_setspecific(scratch_key, s);
	}
	if (crypto_secret_reserve(&s->mem[slot], &s->len[slot], len) != 0)
		return NULL;
	return s->mem[slot];
}

uint8_t *
crypto_scratch(size_t len)
{
	return crypto_scratch_slot(CRYPTO_SCRATCH_CALL, len);
}
