/*
 * The ledgers (ledger.h): the deletion ledger and the consent ledger, one
 * event per dataset that received the consumer, read by WatchDeletions and
 * WatchConsent in sequence order and dropped after the ledger's retention
 * (janitor.c).
 */
#include <string.h>

#include "engine/ledger.h"
#include "store/meta.h"

/* Where each kind lives. */
static const struct {
	enum store_space space;
	enum meta_key next, expired;
} where[] = {
	[LEDGER_DELETION] = { STORE_LEDGER, META_LEDGER_NEXT,
	    META_LEDGER_EXPIRED },
	[LEDGER_CONSENT] = { STORE_CONSENT_LEDGER, META_CONSENT_LEDGER_NEXT,
	    META_CONSENT_LEDGER_EXPIRED },
};

int
ledger_next(struct store_txn *txn, enum ledger_kind kind, uint64_t *seq)
{
	int r = meta_get_u64_or0(txn, where[kind].next, 0, seq);

	if (r == 0 && *seq == 0)
		*seq = 1;
	return r;
}

int
ledger_set_next(struct store_txn *txn, enum ledger_kind kind, uint64_t seq)
{
	return meta_put_u64(txn, where[kind].next, 0, seq);
}

int
ledger_append_txn(struct store_txn *txn, enum ledger_kind kind, uint64_t seq,
    uint64_t at_ms, uint32_t dataset,
    const uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES])
{
	uint8_t key[8], rec[LEDGER_REC_BYTES];

	store_put_u64(key, seq);
	rec[0] = LEDGER_REC_FORMAT;
	store_put_u64(rec + LEDGER_AT, at_ms);
	store_put_u32(rec + LEDGER_DATASET, dataset);
	memcpy(rec + LEDGER_PSEUDONYM, pseudonym, TOKEN_PSEUDONYM_BYTES);
	return store_put(txn, where[kind].space, key, sizeof(key), rec,
	    sizeof(rec), 0);
}

int
ledger_read(struct vault *v, enum ledger_kind kind, uint64_t after_seq,
    struct ledger_event *out, size_t cap, size_t *n,
    uint64_t *expired_through)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	int rc, r;

	*n = 0;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((r = meta_get_u64_or0(txn, where[kind].expired, 0,
	    expired_through)) != 0)
		goto out;
	if ((rc = store_cursor_open(txn, where[kind].space, &cur)) != 0) {
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
		e->at_ms = store_get_u64(p + LEDGER_AT);
		e->dataset = store_get_u32(p + LEDGER_DATASET);
		memcpy(e->pseudonym, p + LEDGER_PSEUDONYM, TOKEN_PSEUDONYM_BYTES);
	}
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	return r;
}

int
ledger_expire_txn(struct store_txn *txn, enum ledger_kind kind,
    uint64_t before_ms, size_t max, size_t *expired)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	uint64_t last = 0;
	int rc, r = 0;

	*expired = 0;
	if ((rc = store_cursor_open(txn, where[kind].space, &cur)) != 0)
		return rc;
	while (*expired < max &&
	    (rc = store_cursor_get(cur, &k, &val, STORE_FIRST)) == 0) {
		if (val.len != LEDGER_REC_BYTES || k.len != 8) {
			r = VAULT_ERR_STATE;
			break;
		}
		if (store_get_u64((const uint8_t *)val.data + LEDGER_AT) >= before_ms)
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
		r = meta_put_u64(txn, where[kind].expired, 0, last);
	return r;
}
