#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "receipt.h"

#define RECEIPT_HEAD "vaultd deletion receipt v1\n"

enum kind { K_STRING, K_BOOL, K_UINT, K_LIST };

/* The signed fields in their signed order, with their JSON names. */
static const struct {
	const char *name;	/* in signed_bytes */
	const char *key;	/* in the JSON receipt */
	enum kind kind;
} fields[] = {
	{ "request_id", "request_id", K_STRING },
	{ "consumer_ref", "consumer_ref", K_STRING },
	{ "found", "found", K_BOOL },
	{ "deleted_at_ms", "deleted_at_ms", K_UINT },
	{ "epoch", "epoch", K_UINT },
	{ "datasets", "affected_datasets", K_LIST },
	{ "audit_head", "audit_head", K_STRING },
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* The JSON fields outside the signed text. */
static const char *const unsigned_keys[] = {
	"final_at_ms", "signed_bytes", "signature",
};

/* A value inside the signed bytes. */
struct span {
	const char *p;
	size_t len;
};

static void __attribute__((format(printf, 3, 4)))
say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static bool
known_key(const char *key)
{
	for (size_t i = 0; i < N_FIELDS; i++)
		if (strcmp(key, fields[i].key) == 0)
			return true;
	for (size_t i = 0; i < sizeof(unsigned_keys) / sizeof(unsigned_keys[0]); i++)
		if (strcmp(key, unsigned_keys[i]) == 0)
			return true;
	return false;
}

/* Splits the canonical text into the values of fields[]; -1 if it is not. */
static int
parse_signed(const uint8_t *text, size_t len, struct span v[N_FIELDS])
{
	const char *p = (const char *)text, *end = p + len;
	const size_t hl = sizeof(RECEIPT_HEAD) - 1;

	if (len < hl || memcmp(p, RECEIPT_HEAD, hl) != 0)
		return -1;
	p += hl;
	for (size_t i = 0; i < N_FIELDS; i++) {
		size_t nl = strlen(fields[i].name);
		const char *eol;

		if ((size_t)(end - p) < nl + 2 || memcmp(p, fields[i].name, nl) != 0 ||
		    p[nl] != ':' || p[nl + 1] != ' ')
			return -1;
		p += nl + 2;
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return -1;
		v[i].p = p;
		v[i].len = (size_t)(eol - p);
		p = eol + 1;
	}
	return p == end ? 0 : -1;
}

static bool
same(struct span v, const char *s, size_t n)
{
	return v.len == n && memcmp(v.p, s, n) == 0;
}

/*
 * The array against the signed comma-separated list, element by element:
 * ["a,b"] is not "a,b", and [""] is not the empty list.
 */
static bool
same_list(struct span v, const json_t *a)
{
	const char *p = v.p, *end = v.p + v.len;
	size_t n = json_array_size(a);

	if (n == 0 || v.len == 0)
		return n == 0 && v.len == 0;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(a, i);
		const char *comma;

		if (p == NULL)
			return false;
		comma = memchr(p, ',', (size_t)(end - p));
		if (!same((struct span){ p, (size_t)((comma ? comma : end) - p) },
		    json_string_value(e), json_string_length(e)))
			return false;
		p = comma != NULL ? comma + 1 : NULL;
	}
	return p == NULL;
}

static bool
typed(const json_t *j, enum kind kind)
{
	switch (kind) {
	case K_STRING:
		return json_is_string(j);
	case K_BOOL:
		return json_is_boolean(j);
	case K_UINT:
		return json_is_integer(j) && json_integer_value(j) >= 0;
	case K_LIST:
		if (!json_is_array(j))
			return false;
		for (size_t i = 0; i < json_array_size(j); i++)
			if (!json_is_string(json_array_get(j, i)))
				return false;
		return true;
	}
	return false;
}

/* A value of the right type, compared as the daemon renders it. */
static bool
agrees(struct span v, const json_t *j, enum kind kind)
{
	char num[32];

	switch (kind) {
	case K_STRING:
		return same(v, json_string_value(j), json_string_length(j));
	case K_BOOL:
		return json_is_true(j) ? same(v, "true", 4) : same(v, "false", 5);
	case K_UINT:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		return same(v, num, strlen(num));
	case K_LIST:
		return same_list(v, j);
	}
	return false;
}

/* A padded base64 string field, decoded into a new buffer; NULL if not. */
static uint8_t *
decode(const json_t *o, const char *key, size_t *len)
{
	const json_t *j = json_object_get(o, key);
	size_t n = json_string_length(j), cap = n / 4 * 3 + 3;
	uint8_t *out;

	if (!json_is_string(j) || (out = malloc(cap)) == NULL)
		return NULL;
	if (sodium_base642bin(out, cap, json_string_value(j), n, NULL, len, NULL,
	    sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

int
receipt_verify(const json_t *o, const uint8_t pk[32], char *why, size_t whylen)
{
	struct span v[N_FIELDS];
	uint8_t *text = NULL, *sig = NULL;
	size_t len, siglen;
	const char *key;
	void *it;
	int r = -1;

	why[0] = '\0';
	/* jansson's iterators take a non-const object; nothing here changes it. */
	for (it = json_object_iter((json_t *)o); it != NULL;
	    it = json_object_iter_next((json_t *)o, it)) {
		key = json_object_iter_key(it);
		if (!known_key(key)) {
			say(why, whylen, "a field that receipts do not have");
			goto out;
		}
	}
	if ((text = decode(o, "signed_bytes", &len)) == NULL) {
		say(why, whylen, "signed_bytes missing or not base64");
		goto out;
	}
	if ((sig = decode(o, "signature", &siglen)) == NULL ||
	    siglen != crypto_sign_BYTES) {
		say(why, whylen, "signature missing, not base64 or not %d bytes",
		    crypto_sign_BYTES);
		goto out;
	}
	if (crypto_sign_verify_detached(sig, text, len, pk) != 0) {
		say(why, whylen, "the signature does not match signed_bytes");
		goto out;
	}
	if (parse_signed(text, len, v) != 0) {
		say(why, whylen, "signed_bytes are not a v1 receipt");
		goto out;
	}
	for (size_t i = 0; i < N_FIELDS; i++) {
		const json_t *j = json_object_get(o, fields[i].key);

		if (j == NULL) {
			say(why, whylen, "%s missing", fields[i].key);
			goto out;
		}
		if (!typed(j, fields[i].kind)) {
			say(why, whylen, "%s has the wrong type", fields[i].key);
			goto out;
		}
		if (!agrees(v[i], j, fields[i].kind)) {
			say(why, whylen, "%s differs from the signed bytes", fields[i].key);
			goto out;
		}
	}
	if (json_object_get(o, "final_at_ms") != NULL &&
	    !typed(json_object_get(o, "final_at_ms"), K_UINT)) {
		say(why, whylen, "final_at_ms has the wrong type");
		goto out;
	}
	r = 0;
out:
	free(text);
	free(sig);
	return r;
}
