#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/crypto.h"

static uint8_t key[CRYPTO_KEY_BYTES];
static const uint8_t ad[] = "consumer-ref|email|gen1";
static const uint8_t plain[] = "alice@example.com";

static int
setup(void **state)
{
	(void)state;
	assert_int_equal(crypto_init(), 0);
	randombytes_buf(key, sizeof(key));
	return 0;
}

static void
seal(uint8_t *blob)
{
	assert_int_equal(crypto_seal(key, 7, ad, sizeof(ad), plain, sizeof(plain),
	    blob, sizeof(plain) + CRYPTO_OVERHEAD), 0);
}

static void
test_round_trip(void **state)
{
	uint8_t blob[sizeof(plain) + CRYPTO_OVERHEAD], out[sizeof(plain)];
	uint32_t ver = 0;
	size_t n = 0;

	(void)state;
	seal(blob);
	assert_int_equal(blob[0], CRYPTO_FORMAT_V1);
	assert_int_equal(crypto_blob_version(blob, sizeof(blob), &ver), 0);
	assert_int_equal(ver, 7);
	assert_int_equal(crypto_open(key, ad, sizeof(ad), blob, sizeof(blob), out,
	    sizeof(out), &n), 0);
	assert_int_equal(n, sizeof(plain));
	assert_memory_equal(out, plain, sizeof(plain));
	/* The plaintext is not in the blob. */
	assert_null(memmem(blob, sizeof(blob), "alice", 5));
}

static void
test_tamper_any_byte_fails(void **state)
{
	uint8_t blob[sizeof(plain) + CRYPTO_OVERHEAD], out[sizeof(plain)];
	size_t n;

	(void)state;
	seal(blob);
	for (size_t i = 0; i < sizeof(blob); i++) {
		for (int bit = 0; bit < 8; bit++) {
			blob[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(crypto_open(key, ad, sizeof(ad), blob,
			    sizeof(blob), out, sizeof(out), &n), VAULT_ERR_CRYPTO);
			assert_int_equal(n, 0);
			blob[i] ^= (uint8_t)(1u << bit);
		}
	}
	/* Truncated and extended blobs fail too. */
	assert_int_equal(crypto_open(key, ad, sizeof(ad), blob, sizeof(blob) - 1,
	    out, sizeof(out), &n), VAULT_ERR_CRYPTO);
	assert_int_equal(crypto_open(key, ad, sizeof(ad), blob, 10, out,
	    sizeof(out), &n), VAULT_ERR_CRYPTO);
}

static void
test_moved_context_fails(void **state)
{
	uint8_t blob[sizeof(plain) + CRYPTO_OVERHEAD], out[sizeof(plain)];
	uint8_t other_ad[sizeof(ad)];
	size_t n;

	(void)state;
	seal(blob);
	for (size_t i = 0; i < sizeof(ad); i++) {
		memcpy(other_ad, ad, sizeof(ad));
		other_ad[i] ^= 0x01;
		assert_int_equal(crypto_open(key, other_ad, sizeof(other_ad), blob,
		    sizeof(blob), out, sizeof(out), &n), VAULT_ERR_CRYPTO);
	}
	assert_int_equal(crypto_open(key, ad, sizeof(ad) - 1, blob, sizeof(blob),
	    out, sizeof(out), &n), VAULT_ERR_CRYPTO);
}

static void
test_wrong_key_fails(void **state)
{
	uint8_t blob[sizeof(plain) + CRYPTO_OVERHEAD], out[sizeof(plain)];
	uint8_t other[CRYPTO_KEY_BYTES];
	size_t n;

	(void)state;
	seal(blob);
	memcpy(other, key, sizeof(other));
	other[31] ^= 0x80;
	assert_int_equal(crypto_open(other, ad, sizeof(ad), blob, sizeof(blob),
	    out, sizeof(out), &n), VAULT_ERR_CRYPTO);
}

/* Per thread: well past one nonce pool (crypto.c: 170 nonces each). */
#define NONCES 2000
#define NONCE_THREADS 4

static uint8_t nonces[NONCE_THREADS * NONCES][CRYPTO_NONCE_BYTES];

static int
cmp_nonce(const void *a, const void *b)
{
	return memcmp(a, b, CRYPTO_NONCE_BYTES);
}

/* On a thread of its own: no cmocka assertion here, a count of failures. */
static void *
seal_many(void *arg)
{
	uint8_t (*mine)[CRYPTO_NONCE_BYTES] = arg;
	uint8_t blob[sizeof(plain) + CRYPTO_OVERHEAD];
	intptr_t failed = 0;

	for (int i = 0; i < NONCES; i++) {
		failed += crypto_seal(key, 7, ad, sizeof(ad), plain, sizeof(plain),
		    blob, sizeof(blob)) != 0;
		memcpy(mine[i], blob + CRYPTO_BLOB_NONCE, CRYPTO_NONCE_BYTES);
	}
	return (void *)failed;
}

/* No nonce repeats, within one thread's pools or across threads'. */
static void
test_nonces_unique(void **state)
{
	pthread_t th[NONCE_THREADS];
	size_t n = NONCE_THREADS * NONCES;

	(void)state;
	for (int t = 0; t < NONCE_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, seal_many,
		    nonces[t * NONCES]), 0);
	for (int t = 0; t < NONCE_THREADS; t++) {
		void *failed;

		pthread_join(th[t], &failed);
		assert_null(failed);
	}
	qsort(nonces, n, CRYPTO_NONCE_BYTES, cmp_nonce);
	for (size_t i = 1; i < n; i++)
		assert_true(memcmp(nonces[i - 1], nonces[i], CRYPTO_NONCE_BYTES) != 0);
}

/* Known answers, computed independently with Python's hashlib.blake2b. */
static void
test_consumer_ref_known_answer(void **state)
{
	uint8_t k[CRYPTO_KEY_BYTES], ref[CRYPTO_REF_BYTES], kcv[CRYPTO_KCV_BYTES];
	char hex[2 * CRYPTO_REF_BYTES + 1];

	(void)state;
	for (int i = 0; i < CRYPTO_KEY_BYTES; i++)
		k[i] = (uint8_t)i;
	crypto_consumer_ref(k, "alice@example.com", 17, ref);
	crypto_hex(ref, sizeof(ref), hex);
	assert_string_equal(hex,
	    "db991e0af62a5b7d9e0e5a5f11998b39f2ca17cbfb97aa709fd8829304b66f44");
	memset(k, 7, sizeof(k));
	crypto_key_check_value(k, kcv);
	crypto_hex(kcv, sizeof(kcv), hex);
	assert_string_equal(hex, "20d296e65c89d62d2e47245ec8346df0");
}

static void
test_short_output_refused(void **state)
{
	uint8_t blob[sizeof(plain) + CRYPTO_OVERHEAD];

	(void)state;
	assert_int_equal(crypto_seal(key, 1, NULL, 0, plain, sizeof(plain), blob,
	    sizeof(blob) - 1), VAULT_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_tamper_any_byte_fails),
		cmocka_unit_test(test_moved_context_fails),
		cmocka_unit_test(test_wrong_key_fails),
		cmocka_unit_test(test_nonces_unique),
		cmocka_unit_test(test_consumer_ref_known_answer),
		cmocka_unit_test(test_short_output_refused),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
