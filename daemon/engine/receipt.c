/*
 * Deletion receipts: their canonical signed text (receipt.h), and their
 * records under the request id, which make a repeated request return the
 * first receipt byte for byte.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dataset.h"
#include "engine/receipt.h"
#include "engine/requests.h"
#include "util/log.h"

#define RECEIPT_HEAD "vaultd deletion receipt v1\n"

void
receipt_clear(struct receipt *r)
{
	for (size_t i = 0; i < r->n_datasets; i++)
		free(r->datasets[i]);
	free(r->datasets);
	free(r->signed_bytes);
	memset(r, 0, sizeof(*r));
}

int
receipt_render(struct receipt *r)
{
	size_t cap = 512 + r->n_datasets * (DATASET_ID_MAX + 1), off;
	char *buf = malloc(cap);
	int n;

	if (buf == NULL)
		return VAULT_ERR_NOMEM;
	n = snprintf(buf, cap, RECEIPT_HEAD "request_id: %s\nconsumer_ref: %s\n"
	    "found: %s\ndeleted_at_ms: %" PRIu64 "\nepoch: %u\ndatasets: ",
	    r->request_id, r->ref_hex, r->found ? "true" : "false",
	    r->deleted_at_ms, r->epoch);
	off = (size_t)n;
	for (size_t i = 0; i < r->n_datasets; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "",
		    r->datasets[i]);
	off += (size_t)snprintf(buf + off, cap - off, "\naudit_head: %s\n",
	    r->audit_head);
	r->signed_bytes = (uint8_t *)buf;
	r->signed_len = off;
	return 0;
}

/* The value of "name: value\n" in text, copied into out (len bytes). */
static int
field(const char *text, size_t tlen, const char *name, char *out, size_t len)
{
	size_t nlen = strlen(name);
	const char *p = text, *end = text + tlen;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		if ((size_t)(nl - p) > nlen + 1 && memcmp(p, name, nlen) == 0 &&
		    p[nlen] == ':' && p[nlen + 1] == ' ') {
			size_t vlen = (size_t)(nl - p) - nlen - 2;

			if (vlen >= len)
				return VAULT_ERR_INVALID;
			memcpy(out, p + nlen + 2, vlen);
			out[vlen] = '\0';
			return 0;
		}
		if ((size_t)(nl - p) == nlen + 1 && memcmp(p, name, nlen) == 0 &&
		    p[nlen] == ':') {
			out[0] = '\0';
			return 0;
		}
		p = nl + 1;
	}
	return VAULT_ERR_INVALID;
}

int
receipt_parse(const uint8_t *bytes, size_t len, struct receipt *r)
{
	const char *t = (const char *)bytes;
	char found[8], num[32], *list = NULL, *tok, *save = NULL;
	size_t cap = len + 1;
	int rc = VAULT_ERR_INVALID;

	if (len < sizeof(RECEIPT_HEAD) - 1 ||
	    memcmp(t, RECEIPT_HEAD, sizeof(RECEIPT_HEAD) - 1) != 0 ||
	    (list = malloc(cap)) == NULL)
		goto out;
	if (field(t, len, "request_id", r->request_id, sizeof(r->request_id)) ||
	    field(t, len, "consumer_ref", r->ref_hex, sizeof(r->ref_hex)) ||
	    field(t, len, "found", found, sizeof(found)) ||
	    field(t, len, "datasets", list, cap) ||
	    field(t, len, "audit_head", r->audit_head, sizeof(r->audit_head)))
		goto out;
	r->found = strcmp(found, "true") == 0;
	if (field(t, len, "deleted_at_ms", num, sizeof(num)))
		goto out;
	r->deleted_at_ms = strtoull(num, NULL, 10);
	if (field(t, len, "epoch", num, sizeof(num)))
		goto out;
	r->epoch = (uint32_t)strtoul(num, NULL, 10);
	for (tok = strtok_r(list, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		char **d = realloc(r->datasets, (r->n_datasets + 1) * sizeof(char *));

		if (d == NULL) {
			rc = VAULT_ERR_NOMEM;
			goto out;
		}
		r->datasets = d;
		if ((d[r->n_datasets] = strdup(tok)) == NULL) {
			rc = VAULT_ERR_NOMEM;
			goto out;
		}
		r->n_datasets++;
	}
	rc = 0;
out:
	free(list);
	return rc;
}

int
receipt_find_txn(struct store_txn *txn, const char *request_id,
    const uint8_t *ref, struct receipt *out, bool *found)
{
	uint8_t key[sizeof(RECEIPT_KEY_PREFIX) - 1 + RECEIPT_REQUEST_ID_MAX];
	size_t n = strlen(request_id);
	struct store_val k = { sizeof(RECEIPT_KEY_PREFIX) - 1 + n, key }, val;
	const uint8_t *p;
	int rc, r;

	memcpy(key, RECEIPT_KEY_PREFIX, sizeof(RECEIPT_KEY_PREFIX) - 1);
	memcpy(key + sizeof(RECEIPT_KEY_PREFIX) - 1, request_id, n);
	*found = false;
	if ((rc = store_get(txn, STORE_REQUESTS, k.data, k.len,
	    &val)) == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	p = val.data;
	/* A damaged length must not send the copy below past the file's end. */
	if (val.len <= RECEIPT_REC_HDR || val.len > RECEIPT_REC_HDR + (1 << 20) ||
	    p[0] != REQUEST_REC_FORMAT) {
		log_error("a request record has an unknown format");
		return VAULT_ERR_STATE;
	}
	*found = true;
	if (memcmp(p + REQUEST_REF, ref, CRYPTO_REF_BYTES) != 0)
		return VAULT_ERR_EXISTS;
	memset(out, 0, sizeof(*out));
	if ((r = receipt_parse(p + RECEIPT_REC_HDR, val.len - RECEIPT_REC_HDR, out)) != 0)
		return r;
	memcpy(out->signature, p + RECEIPT_REC_SIG, KEYRING_SIG_BYTES);
	if ((out->signed_bytes = malloc(val.len - RECEIPT_REC_HDR)) == NULL)
		return VAULT_ERR_NOMEM;
	memcpy(out->signed_bytes, p + RECEIPT_REC_HDR, val.len - RECEIPT_REC_HDR);
	out->signed_len = val.len - RECEIPT_REC_HDR;
	out->repeated = true;
	return 0;
}

int
receipt_put_txn(struct store_txn *txn, const uint8_t *ref,
    const struct receipt *r)
{
	size_t n = strlen(r->request_id), len = RECEIPT_REC_HDR + r->signed_len;
	uint8_t key[sizeof(RECEIPT_KEY_PREFIX) - 1 + RECEIPT_REQUEST_ID_MAX], *buf;
	struct store_val k = { sizeof(RECEIPT_KEY_PREFIX) - 1 + n, key }, val;
	int rc;

	if ((buf = malloc(len)) == NULL)
		return VAULT_ERR_NOMEM;
	memcpy(key, RECEIPT_KEY_PREFIX, sizeof(RECEIPT_KEY_PREFIX) - 1);
	memcpy(key + sizeof(RECEIPT_KEY_PREFIX) - 1, r->request_id, n);
	buf[0] = REQUEST_REC_FORMAT;
	store_put_u64(buf + REQUEST_AT, r->deleted_at_ms);
	memcpy(buf + REQUEST_REF, ref, CRYPTO_REF_BYTES);
	memcpy(buf + RECEIPT_REC_SIG, r->signature, KEYRING_SIG_BYTES);
	memcpy(buf + RECEIPT_REC_HDR, r->signed_bytes, r->signed_len);
	val = (struct store_val){ len, buf };
	rc = store_put(txn, STORE_REQUESTS, k.data, k.len, val.data, val.len,
	    0);
	free(buf);
	return rc;
}
