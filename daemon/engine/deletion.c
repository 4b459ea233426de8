#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/crashpoint.h"
#include "audit/audit.h"
#include "engine/consumer.h"
#include "engine/dataset.h"
#include "engine/deletion.h"
#include "engine/requests.h"
#include "store/meta.h"
#include "util/log.h"

#define REC_FORMAT REQUEST_REC_FORMAT
#define REQ_PREFIX "del:"
#define REQ_HDR (1 + 8 + CRYPTO_REF_BYTES + KEYRING_SIG_BYTES)
#define REQ_REF REQUEST_REF
#define LEDGER_REC_BYTES (1 + 8 + 4 + TOKEN_PSEUDONYM_BYTES)
#define RECEIPT_HEAD "vaultd deletion receipt v1\n"

const char *
deletion_check_request_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0)
		return "must not be empty";
	if (n > DELETION_REQUEST_ID_MAX)
		return "longer than 128 bytes";
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return "must be printable ASCII without spaces";
	return NULL;
}

void
receipt_clear(struct receipt *r)
{
	for (size_t i = 0; i < r->n_datasets; i++)
		free(r->datasets[i]);
	free(r->datasets);
	free(r->signed_bytes);
	memset(r, 0, sizeof(*r));
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The canonical text of r (see deletion.h) into r->signed_bytes. */
static int
render(struct receipt *r)
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

/* A meta counter: 0 when absent. */
static uint64_t
meta_count(struct store_txn *txn, enum meta_key key, uint32_t n, int *err)
{
	uint64_t v;

	*err = meta_get_u64(txn, key, n, &v);
	if (*err == VAULT_ERR_NOT_FOUND)
		*err = 0;
	return v;
}

int
deletion_pending(struct store_txn *txn, uint32_t version, uint64_t *count)
{
	int r;

	*count = meta_count(txn, META_PENDING, version, &r);
	return r;
}

int
deletion_mark_final_txn(struct store_txn *txn, uint32_t version)
{
	return meta_del(txn, META_PENDING, version);
}

/* Looks up an earlier receipt under req's request id. */
static int
stored_receipt(struct store_txn *txn, const char *request_id,
    const uint8_t *ref, struct receipt *out, bool *found)
{
	uint8_t key[sizeof(REQ_PREFIX) - 1 + DELETION_REQUEST_ID_MAX];
	size_t n = strlen(request_id);
	struct store_val k = { sizeof(REQ_PREFIX) - 1 + n, key }, val;
	const uint8_t *p;
	int rc, r;

	memcpy(key, REQ_PREFIX, sizeof(REQ_PREFIX) - 1);
	memcpy(key + sizeof(REQ_PREFIX) - 1, request_id, n);
	*found = false;
	if ((rc = store_get(txn, STORE_REQUESTS, k.data, k.len,
	    &val)) == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	p = val.data;
	/* A damaged length must not send the copy below past the file's end. */
	if (val.len <= REQ_HDR || val.len > REQ_HDR + (1 << 20) ||
	    p[0] != REC_FORMAT) {
		log_error("a request record has an unknown format");
		return VAULT_ERR_STATE;
	}
	*found = true;
	if (memcmp(p + REQ_REF, ref, CRYPTO_REF_BYTES) != 0)
		return VAULT_ERR_EXISTS;
	memset(out, 0, sizeof(*out));
	if ((r = receipt_parse(p + REQ_HDR, val.len - REQ_HDR, out)) != 0)
		return r;
	memcpy(out->signature, p + REQ_REF + CRYPTO_REF_BYTES, KEYRING_SIG_BYTES);
	if ((out->signed_bytes = malloc(val.len - REQ_HDR)) == NULL)
		return VAULT_ERR_NOMEM;
	memcpy(out->signed_bytes, p + REQ_HDR, val.len - REQ_HDR);
	out->signed_len = val.len - REQ_HDR;
	out->repeated = true;
	return 0;
}

static int
store_receipt(struct store_txn *txn, const uint8_t *ref,
    const struct receipt *r)
{
	size_t n = strlen(r->request_id), len = REQ_HDR + r->signed_len;
	uint8_t key[sizeof(REQ_PREFIX) - 1 + DELETION_REQUEST_ID_MAX], *buf;
	struct store_val k = { sizeof(REQ_PREFIX) - 1 + n, key }, val;
	int rc;

	if ((buf = malloc(len)) == NULL)
		return VAULT_ERR_NOMEM;
	memcpy(key, REQ_PREFIX, sizeof(REQ_PREFIX) - 1);
	memcpy(key + sizeof(REQ_PREFIX) - 1, r->request_id, n);
	buf[0] = REC_FORMAT;
	store_put_u64(buf + 1, r->deleted_at_ms);
	memcpy(buf + REQ_REF, ref, CRYPTO_REF_BYTES);
	memcpy(buf + REQ_REF + CRYPTO_REF_BYTES, r->signature, KEYRING_SIG_BYTES);
	memcpy(buf + REQ_HDR, r->signed_bytes, r->signed_len);
	val = (struct store_val){ len, buf };
	rc = store_put(txn, STORE_REQUESTS, k.data, k.len, val.data, val.len,
	    0);
	free(buf);
	return rc;
}

/* One ledger event per dataset, and the receipt's dataset list. */
static int
append_events(struct vault *v, struct store_txn *txn, const struct removal *rm,
    uint64_t now, uint64_t *next_seq, struct receipt *out)
{
	uint8_t key[8], rec[LEDGER_REC_BYTES];
	int rc, r;

	if (rm->n_datasets > 0 &&
	    (out->datasets = calloc(rm->n_datasets, sizeof(char *))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < rm->n_datasets; i++) {
		struct dataset_info ds;
		struct store_val k = { 8, key }, val = { sizeof(rec), rec };

		if ((r = dataset_by_number(v, txn, rm->datasets[i], &ds)) != 0)
			return r;
		if ((out->datasets[out->n_datasets] = strdup(ds.id)) == NULL)
			return VAULT_ERR_NOMEM;
		out->n_datasets++;
		store_put_u64(key, (*next_seq)++);
		rec[0] = REC_FORMAT;
		store_put_u64(rec + 1, now);
		store_put_u32(rec + 9, rm->datasets[i]);
		memcpy(rec + 13, rm->pseudonyms[i], TOKEN_PSEUDONYM_BYTES);
		if ((rc = store_put(txn, STORE_LEDGER, k.data, k.len, val.data,
		    val.len, 0)) != 0)
			return rc;
	}
	if (out->n_datasets > 1)
		qsort(out->datasets, out->n_datasets, sizeof(char *), cmp_str);
	return 0;
}

static int
delete_one(struct vault *v, struct store_txn *txn,
    const struct deletion_request *req, uint64_t *next_seq, struct receipt *out)
{
	const uint8_t *ref = req->ref;
	struct removal rm;
	uint8_t head[AUDIT_HASH_BYTES];
	uint64_t head_seq, pending;
	bool found;
	int r;

	if ((r = stored_receipt(txn, req->request_id, ref, out, &found)) != 0 ||
	    found)
		return r;
	memset(out, 0, sizeof(*out));
	if ((r = consumer_remove_txn(v, txn, ref, &rm)) != 0)
		goto out;
	snprintf(out->request_id, sizeof(out->request_id), "%s", req->request_id);
	crypto_hex(ref, CRYPTO_REF_BYTES, out->ref_hex);
	out->found = rm.found;
	out->epoch = rm.found ? rm.epoch : keyring_active_version(v->kr);
	out->deleted_at_ms = store_now_ms();
	if ((r = audit_head(&v->audit, txn, &head_seq, head)) != 0)
		goto out;
	if (head_seq > 0)
		crypto_hex(head, AUDIT_HASH_BYTES, out->audit_head);
	if ((r = append_events(v, txn, &rm, out->deleted_at_ms, next_seq, out)) != 0 ||
	    (r = render(out)) != 0)
		goto out;
	VAULT_CRASH_POINT("delete.before_sign");
	keyring_sign(v->kr, out->signed_bytes, out->signed_len, out->signature);
	VAULT_CRASH_POINT("delete.before_store_receipt");
	if ((r = store_receipt(txn, ref, out)) != 0)
		goto out;
	VAULT_CRASH_POINT("delete.after_store_receipt");
	if (rm.found) {
		pending = meta_count(txn, META_PENDING, rm.epoch, &r);
		if (r == 0)
			r = meta_put_u64(txn, META_PENDING, rm.epoch,
			    pending + 1);
	}
out:
	removal_clear(&rm);
	return r;
}

struct run_job {
	struct vault *v;
	const struct deletion_request *reqs;
	size_t n;
	struct receipt *out;
	size_t bad;
};

static int
run_apply(struct store_txn *txn, void *arg)
{
	struct run_job *job = arg;
	uint64_t next;
	int r;

	next = meta_count(txn, META_LEDGER_NEXT, 0, &r);
	if (r != 0)
		return r;
	if (next == 0)
		next = 1;
	for (size_t i = 0; i < job->n; i++) {
		struct key_version kv;

		if ((r = delete_one(job->v, txn, &job->reqs[i], &next, &job->out[i])) != 0) {
			job->bad = i;
			return r;
		}
		if (keyring_version_get(job->v->kr, txn, job->out[i].epoch,
		    &kv) == 0 &&
		    kv.destroyed)
			job->out[i].final_at_ms = kv.destroyed_ms;
	}
	if ((r = meta_put_u64(txn, META_LEDGER_NEXT, 0, next)) == 0)
		VAULT_CRASH_POINT("delete.before_commit");
	return r;
}

int
deletion_run(struct vault *v, const struct deletion_request *reqs, size_t n,
    struct receipt *out, size_t *bad)
{
	struct run_job job = { v, reqs, n, out, 0 };
	int r;

	memset(out, 0, n * sizeof(*out));
	r = writer_submit(v->wr, run_apply, &job);
	if (r == 0)
		VAULT_CRASH_POINT("delete.after_commit");	/* durable, no reply yet */
	if (r != 0) {
		for (size_t i = 0; i < n; i++)
			receipt_clear(&out[i]);
		*bad = job.bad;
	}
	return r;
}

int
ledger_read(struct vault *v, uint64_t after_seq, struct ledger_event *out,
    size_t cap, size_t *n, uint64_t *expired_through)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	int rc, r;

	*n = 0;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	*expired_through = meta_count(txn, META_LEDGER_EXPIRED, 0, &r);
	if (r != 0)
		goto out;
	if ((rc = store_cursor_open(txn, STORE_LEDGER, &cur)) != 0) {
		r = rc;
		goto out;
	}
	store_put_u64(key, after_seq + 1);
	for (rc = store_cursor_get(cur, &k, &val,
	    STORE_SEEK); rc == 0 && *n < cap;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const uint8_t *p = val.data;
		struct ledger_event *e = &out[(*n)++];

		if (k.len != 8 || val.len != LEDGER_REC_BYTES) {
			r = VAULT_ERR_STATE;
			break;
		}
		e->seq = store_get_u64(k.data);
		e->deleted_at_ms = store_get_u64(p + 1);
		e->dataset = store_get_u32(p + 9);
		memcpy(e->pseudonym, p + 13, TOKEN_PSEUDONYM_BYTES);
	}
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	return r;
}

int
ledger_expire_txn(struct vault *v, struct store_txn *txn, uint64_t before_ms,
    size_t max, size_t *expired)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	uint64_t last = 0;
	int rc, r = 0;

	(void)v;
	*expired = 0;
	if ((rc = store_cursor_open(txn, STORE_LEDGER, &cur)) != 0)
		return rc;
	while (*expired < max &&
	    (rc = store_cursor_get(cur, &k, &val, STORE_FIRST)) == 0) {
		if (val.len != LEDGER_REC_BYTES || k.len != 8) {
			r = VAULT_ERR_STATE;
			break;
		}
		if (store_get_u64((const uint8_t *)val.data + 1) >= before_ms)
			break;
		last = store_get_u64(k.data);
		if ((rc = store_cursor_del(cur)) != 0)
			break;
		(*expired)++;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	if (r == 0 && last != 0)
		r = meta_put_u64(txn, META_LEDGER_EXPIRED, 0, last);
	return r;
}
