/*
 * vaultctl receipt verify FILE [--public-key HEX]
 *
 * FILE holds receipts as vaultctl --json delete prints them (one JSON
 * object a line; blank lines are skipped). Each is checked with the vault's
 * receipt key (from Keys.GetKeyStatus unless given) as receipt.h says. Every
 * other line gets a verdict too: a truncated or unparsable line is invalid,
 * never skipped. Output: "line N: valid ID" or "line N: INVALID [ID]: why",
 * or with --json one {"line","request_id","valid","reason"} object a line
 * and a last {"summary": {...}}. Exit 0 only if every line is valid.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "receipt.h"
#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "receipt verify FILE [--public-key HEX]"

struct tally {
	size_t lines, valid;
};

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
	if (resp->receipt_public_key.len != 32) {
		fprintf(stderr, "vaultctl: the vault has no receipt public key\n");
		r = CTL_ERROR;
	} else {
		memcpy(pk, resp->receipt_public_key.data, 32);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}

/* Request ids are printable ASCII (deletion.h); others are not shown. */
static const char *
shown_id(const json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "request_id"));
	size_t n = id != NULL ? strlen(id) : 0;

	if (n == 0 || n > 128)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return NULL;
	return id;
}

/* One line's verdict; o is the parsed line or NULL. */
static void
report(const struct ctl *ctl, size_t line, const json_t *o, const char *why)
{
	const char *id = o != NULL ? shown_id(o) : NULL;
	bool ok = why == NULL;

	if (ctl->json) {
		json_t *r = json_pack("{s:I,s:o,s:b,s:o}", "line", (json_int_t)line,
		    "request_id", id != NULL ? json_string(id) : json_null(),
		    "valid", ok, "reason", ok ? json_null() : json_string(why));

		json_dumpf(r, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(r);
	} else if (ok) {
		printf("line %zu: valid %s\n", line, id != NULL ? id : "?");
	} else {
		printf("line %zu: INVALID%s%s: %s\n", line, id ? " " : "", id ? id : "",
		    why);
	}
}

/* Parses and checks one non-blank line (its text is not echoed). */
static void
check_line(const struct ctl *ctl, const uint8_t pk[32], size_t line,
    const char *text, size_t len, struct tally *t)
{
	json_error_t err;
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	char why[128];

	t->lines++;
	if (o == NULL) {
		if (json_error_code(&err) == json_error_premature_end_of_input)
			snprintf(why, sizeof(why), "truncated: the JSON ends early");
		else if (json_error_code(&err) == json_error_duplicate_key)
			snprintf(why, sizeof(why), "a field appears twice");
		else
			snprintf(why, sizeof(why), "not valid JSON (column %d)",
			    err.column);
		report(ctl, line, NULL, why);
		return;
	}
	if (!json_is_object(o))
		snprintf(why, sizeof(why), "not a JSON object");
	else if (receipt_verify(o, pk, why, sizeof(why)) == 0)
		why[0] = '\0';
	if (why[0] == '\0')
		t->valid++;
	report(ctl, line, o, why[0] != '\0' ? why : NULL);
	json_decref(o);
}

static bool
blank(const char *s, size_t n)
{
	return strspn(s, " \t") >= n;
}

int
cmd_receipt(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "public-key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	struct tally t = { 0, 0 };
	const char *hex = NULL, *path;
	char *buf = NULL;
	size_t cap = 0, bin, line = 0;
	uint8_t pk[32];
	ssize_t n;
	int ch, r;
	FILE *f;

	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		if (ch != 'k')
			return ctl_usage(USAGE);
		hex = optarg;
	}
	if (argc - optind != 2 || strcmp(argv[optind], "verify") != 0)
		return ctl_usage(USAGE);
	path = argv[optind + 1];
	if (hex != NULL && (sodium_hex2bin(pk, sizeof(pk), hex, strlen(hex), NULL,
	    &bin, NULL) != 0 || bin != 32))
		return ctl_usage(USAGE);
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "vaultctl: cannot read %s\n", path);
		return CTL_USAGE;
	}
	if (hex == NULL && (r = fetch_key(ctl, pk)) != CTL_OK)
		goto out;
	while ((n = getline(&buf, &cap, f)) != -1) {
		line++;
		/* Without its end, a line cut inside a string reads as truncated. */
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		/* A NUL inside the line stays in it: json_loadb refuses it. */
		if (!blank(buf, (size_t)n))
			check_line(ctl, pk, line, buf, (size_t)n, &t);
	}
	if (ferror(f)) {
		fprintf(stderr, "vaultctl: cannot read %s\n", path);
		r = CTL_ERROR;
		goto out;
	}
	if (ctl->json) {
		json_t *s = json_pack("{s:{s:I,s:I,s:I}}", "summary", "lines",
		    (json_int_t)t.lines, "valid", (json_int_t)t.valid, "invalid",
		    (json_int_t)(t.lines - t.valid));

		json_dumpf(s, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(s);
	}
	if (t.lines == 0)
		fprintf(stderr, "vaultctl: no receipts in %s\n", path);
	else if (t.valid != t.lines)
		fprintf(stderr, "vaultctl: %zu of %zu receipt lines in %s failed "
		    "verification\n", t.lines - t.valid, t.lines, path);
	r = t.lines > 0 && t.valid == t.lines ? CTL_OK : CTL_ERROR;
out:
	free(buf);
	fclose(f);
	return r;
}
