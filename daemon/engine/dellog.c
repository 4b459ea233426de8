#include <string.h>

#include <sodium.h>

#include "engine/dellog.h"
#include "store/meta.h"
#include "store/writer.h"

int
dellog_incarnation_txn(struct store_txn *txn,
    uint8_t out[DELLOG_INCARNATION_BYTES])
{
	struct store_val val;
	int r = meta_get(txn, META_INCARNATION, 0, &val);

	memset(out, 0, DELLOG_INCARNATION_BYTES);
	if (r == VAULT_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if (val.len != DELLOG_INCARNATION_BYTES)
		return VAULT_ERR_STATE;
	memcpy(out, val.data, DELLOG_INCARNATION_BYTES);
	return 0;
}

int
dellog_incarnation(struct vault *v, uint8_t out[DELLOG_INCARNATION_BYTES])
{
	struct store_txn *txn = NULL;
	int r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	r = dellog_incarnation_txn(txn, out);
	store_read_end(txn);
	return r;
}

static int
put_incarnation(struct store_txn *txn, void *arg)
{
	return meta_put(txn, META_INCARNATION, 0, arg,
	    DELLOG_INCARNATION_BYTES);
}

int
dellog_new_incarnation(struct vault *v)
{
	uint8_t inc[DELLOG_INCARNATION_BYTES];

	randombytes_buf(inc, sizeof(inc));
	return writer_submit(v->wr, put_incarnation, inc);
}

int
dellog_next(struct store_txn *txn, uint64_t *seq)
{
	int r = meta_get_u64_or0(txn, META_DELETION_NEXT, 0, seq);

	if (r == 0 && *seq == 0)
		*seq = 1;
	return r;
}

int
dellog_append_txn(struct store_txn *txn, const uint8_t *ref, uint64_t at_ms)
{
	uint8_t key[8], rec[DELLOG_REC_BYTES];
	uint64_t seq;
	int r;

	if ((r = dellog_next(txn, &seq)) != 0)
		return r;
	store_put_u64(key, seq);
	rec[0] = DELLOG_REC_FORMAT;
	store_put_u64(rec + DELLOG_AT, at_ms);
	memcpy(rec + DELLOG_REF, ref, CRYPTO_REF_BYTES);
	if ((r = store_put(txn, STORE_DELETIONS, key, sizeof(key), rec,
	    sizeof(rec), STORE_APPEND)) != 0)
		return r;
	return meta_put_u64(txn, META_DELETION_NEXT, 0, seq + 1);
}

int
dellog_read(struct vault *v, uint64_t after_seq, struct dellog_entry *out,
    size_t cap, size_t *n, uint64_t *expired_through)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	int rc, r = 0;

	*n = 0;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((r = meta_get_u64_or0(txn, META_DELETION_EXPIRED, 0,
	    expired_through)) != 0 ||
	    (r = store_cursor_open(txn, STORE_DELETIONS, &cur)) != 0)
		goto out;
	store_put_u64(key, after_seq + 1);
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	    rc == 0 && *n < cap;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const uint8_t *p = val.data;
		struct dellog_entry *e = &out[(*n)++];

		if (k.len != 8 || val.len != DELLOG_REC_BYTES ||
		    p[0] != DELLOG_REC_FORMAT) {
			r = VAULT_ERR_STATE;
			break;
		}
		e->seq = store_get_u64(k.data);
		e->deleted_at_ms = store_get_u64(p + DELLOG_AT);
		memcpy(e->ref, p + DELLOG_REF, CRYPTO_REF_BYTES);
	}
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	return r;
}

int
dellog_expire_txn(struct store_txn *txn, uint64_t before_ms, size_t max,
    size_t *expired)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	uint64_t last = 0;
	int rc, r = 0;

	*expired = 0;
	if ((rc = store_cursor_open(txn, STORE_DELETIONS, &cur)) != 0)
		return rc;
	while (*expired < max &&
	    (rc = store_cursor_get(cur, &k, &val, STORE_FIRST)) == 0) {
		if (val.len != DELLOG_REC_BYTES || k.len != 8) {
			r = VAULT_ERR_STATE;
			break;
		}
		if (store_get_u64((const uint8_t *)val.data + DELLOG_AT) >=
		    before_ms)
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
		r = meta_put_u64(txn, META_DELETION_EXPIRED, 0, last);
	return r;
}
