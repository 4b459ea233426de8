/*
 * Receipts, the auditor's side (client/receipt.h): receipt_verify checks a
 * receipt as `vaultctl --json delete` prints it, a JSON object. An input
 * starting with 'S' has its signed_bytes signed afresh with the fuzzer's
 * key, so that the checks after the signature are reached too.
 *
 * Differential check: when the strict client accepts a receipt, the
 * daemon's own parser (receipt_parse) must read the same request id,
 * consumer ref, found flag and audit head from its signed bytes.
 */
#include <string.h>

#include <jansson.h>

#include "engine/receipt.h"
#include "receipt.h"
#include "fuzz_common.h"

static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];

/* Signs o's signed_bytes (when they are base64) with sk into its signature. */
static void
resign(json_t *o)
{
	const json_t *j = json_object_get(o, "signed_bytes");
	uint8_t sig[crypto_sign_BYTES], *text;
	char b64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES,
	    sodium_base64_VARIANT_ORIGINAL)];
	size_t n, len;

	if (!json_is_string(j))
		return;
	n = json_string_length(j);
	if ((text = malloc(n / 4 * 3 + 3)) == NULL)
		abort();
	if (sodium_base642bin(text, n / 4 * 3 + 3, json_string_value(j), n, NULL,
	    &len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0) {
		crypto_sign_detached(sig, NULL, text, len, sk);
		sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig),
		    sodium_base64_VARIANT_ORIGINAL);
		json_object_set_new(o, "signature", json_string(b64));
	}
	free(text);
}

static void
agree(json_t *o)
{
	const json_t *j = json_object_get(o, "signed_bytes");
	struct receipt r;
	uint8_t *text;
	size_t n = json_string_length(j), len;

	if ((text = malloc(n / 4 * 3 + 3)) == NULL)
		abort();
	FUZZ_CHECK(sodium_base642bin(text, n / 4 * 3 + 3, json_string_value(j),
	    n, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0);
	memset(&r, 0, sizeof(r));
	if (receipt_parse(text, len, &r) == 0) {
		FUZZ_CHECK(strcmp(r.request_id, json_string_value(
		    json_object_get(o, "request_id"))) == 0);
		FUZZ_CHECK(strcmp(r.ref_hex, json_string_value(
		    json_object_get(o, "consumer_ref"))) == 0);
		FUZZ_CHECK(r.found == json_is_true(json_object_get(o, "found")));
		FUZZ_CHECK(strcmp(r.audit_head, json_string_value(
		    json_object_get(o, "audit_head"))) == 0);
	}
	receipt_clear(&r);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t err;
	json_t *o;
	char why[128];
	bool sign = size > 0 && data[0] == 'S';

	fuzz_init();
	if (pk[0] == 0 && pk[1] == 0) {
		uint8_t seed[crypto_sign_SEEDBYTES];

		fuzz_key(seed, sizeof(seed), 3);
		crypto_sign_seed_keypair(pk, sk, seed);
	}
	if (sign) {
		data++;
		size--;
	}
	if ((o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    &err)) == NULL)
		return 0;
	if (json_is_object(o)) {
		if (sign)
			resign(o);
		if (receipt_verify(o, pk, why, sizeof(why)) == 0)
			agree(o);
		else
			FUZZ_CHECK(why[0] != '\0');
	}
	json_decref(o);
	return 0;
}
