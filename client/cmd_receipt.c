/*
 * vaultctl receipt verify FILE [--public-key HEX]
 *
 * FILE holds receipts as vaultctl --json delete prints them (one JSON
 * object a line). Each signature is checked over the exact signed bytes
 * with the vault's receipt key (from Keys.GetKeyStatus unless given), and
 * the signed text must agree with the fields shown beside it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "receipt verify FILE [--public-key HEX]"

static int
fetch_key(struct ctl *ctl, uint8_t pk[32])
{
	Vault__V1__GetKeyStatusRequest req = VAULT__V1__GET_KEY_STATUS_REQUEST__INIT;
	Vault__V1__GetKeyStatusResponse *resp = NULL;
	struct vc_status st;
	int r = CTL_OK;

	if (vc_unary(ctl->vc, "/vault.v1.Keys/GetKeyStatus", &req.base,
	    &vault__v1__get_key_status_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (resp->receipt_public_key.len != 32)
		r = CTL_ERROR;
	else
		memcpy(pk, resp->receipt_public_key.data, 32);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}

static bool
decode(json_t *o, const char *name, uint8_t *out, size_t cap, size_t *len)
{
	const char *s = json_string_value(json_object_get(o, name));

	return s != NULL && sodium_base642bin(out, cap, s, strlen(s), NULL, len,
	    NULL, sodium_base64_VARIANT_ORIGINAL) == 0;
}

/* The signed text must carry the same request id and consumer ref. */
static bool
consistent(json_t *o, const uint8_t *text, size_t len)
{
	char want[256];
	const char *id = json_string_value(json_object_get(o, "request_id"));
	const char *ref = json_string_value(json_object_get(o, "consumer_ref"));

	if (id == NULL || ref == NULL)
		return false;
	snprintf(want, sizeof(want), "\nrequest_id: %s\nconsumer_ref: %s\n", id, ref);
	return memmem(text, len, want, strlen(want)) != NULL;
}

int
cmd_receipt(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "public-key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	uint8_t pk[32], sig[64], *text = NULL;
	const char *hex = NULL;
	size_t len, siglen, bin;
	int ch, r, bad = 0, good = 0;
	char line[65536];
	FILE *f;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch != 'k')
			return ctl_usage(USAGE);
		hex = optarg;
	}
	if (argc - optind != 2 || strcmp(argv[optind], "verify") != 0)
		return ctl_usage(USAGE);
	if (hex != NULL) {
		if (sodium_hex2bin(pk, sizeof(pk), hex, strlen(hex), NULL, &bin,
		    NULL) != 0 || bin != 32)
			return ctl_usage(USAGE);
	} else if ((r = fetch_key(ctl, pk)) != CTL_OK) {
		return r;
	}
	if ((f = fopen(argv[optind + 1], "r")) == NULL) {
		fprintf(stderr, "vaultctl: cannot read %s\n", argv[optind + 1]);
		return CTL_USAGE;
	}
	text = malloc(sizeof(line));
	while (text != NULL && fgets(line, sizeof(line), f) != NULL) {
		json_t *o = json_loads(line, 0, NULL);
		bool ok;

		if (o == NULL)
			continue;
		ok = decode(o, "signed_bytes", text, sizeof(line), &len) &&
		    decode(o, "signature", sig, sizeof(sig), &siglen) && siglen == 64 &&
		    crypto_sign_verify_detached(sig, text, len, pk) == 0 &&
		    consistent(o, text, len);
		printf("%s %s\n", ok ? "valid" : "INVALID",
		    json_string_value(json_object_get(o, "request_id")) ?
		    json_string_value(json_object_get(o, "request_id")) : "?");
		ok ? good++ : bad++;
		json_decref(o);
	}
	fclose(f);
	free(text);
	if (good + bad == 0) {
		fprintf(stderr, "vaultctl: no receipts in %s\n", argv[optind + 1]);
		return CTL_ERROR;
	}
	return bad == 0 ? CTL_OK : CTL_ERROR;
}
