/*
 * Processing a DROP list (dropproc.h): match, then delete, exempt or opt
 * out, each as the rest of the vault does it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/consent.h"
#include "engine/consumer.h"
#include "engine/deletion.h"
#include "engine/dropproc.h"
#include "engine/receipt.h"
#include "engine/requests.h"
#include "store/store.h"

#define REQUEST_PREFIX "drop-"
/* Consumers sharing one identifier that one item opts out. */
#define SHARED_MAX 64

const char *
drop_check_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > DROP_ID_MAX)
		return "must be 1 to 64 characters";
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') ||
		    (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9')))
			return "may hold only letters and digits";
	return NULL;
}

/*
 * Marks items with kind (drop.h): all of them, or with out, those of out's
 * that were deleted. One transaction.
 */
struct mark_job {
	struct vault *v;
	char kind;
	const struct drop_item *items;
	const struct drop_outcome *out;		/* NULL: every item */
	size_t n;
};

static int
mark_apply(struct store_txn *txn, void *arg)
{
	struct mark_job *job = arg;
	uint8_t keyed[DROP_KEYED_BYTES];
	uint64_t now = store_now_ms();
	int r;

	for (size_t i = 0; i < job->n; i++) {
		if (job->out != NULL && job->out[i].status != DROP_ST_DELETED)
			continue;
		drop_keyed(keyring_index_key(job->v->kr), job->items[i].list,
		    job->items[i].hash, keyed);
		if ((r = drop_mark_txn(txn, job->kind, job->items[i].list, keyed,
		    now)) != 0)
			return r;
	}
	return 0;
}

int
drop_cancel(struct vault *v, const struct drop_item *items, size_t n)
{
	return writer_submit(v->wr, mark_apply,
	    &(struct mark_job){ v, DROP_CANCEL_KIND, items, NULL, n });
}

/* What one item matched, read in one snapshot. */
struct match {
	size_t n;				/* consumers indexed */
	uint8_t refs[SHARED_MAX][CRYPTO_REF_BYTES];
	bool cancelled, held, by_receipt;
};

/* The consumer a receipt of request id "drop-" ID names, if one exists. */
static int
by_receipt(struct store_txn *txn, const char *id, struct match *m)
{
	char key[sizeof(RECEIPT_KEY_PREFIX) + sizeof(REQUEST_PREFIX) +
	    DROP_ID_MAX];
	struct store_val val;
	int n = snprintf(key, sizeof(key), RECEIPT_KEY_PREFIX REQUEST_PREFIX
	    "%s", id), rc;

	rc = store_get(txn, STORE_REQUESTS, key, (size_t)n, &val);
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (val.len < REQUEST_REC_BYTES)
		return VAULT_ERR_STATE;
	memcpy(m->refs[0], (const uint8_t *)val.data + REQUEST_REF,
	    CRYPTO_REF_BYTES);
	m->n = 1;
	m->by_receipt = true;
	return 0;
}

static int
match_one(struct vault *v, struct store_txn *txn, const struct drop_item *it,
    struct match *m)
{
	uint8_t keyed[DROP_KEYED_BYTES], flags;
	uint64_t at;
	int r;

	memset(m, 0, sizeof(*m));
	drop_keyed(keyring_index_key(v->kr), it->list, it->hash, keyed);
	if ((r = drop_mark_get(txn, DROP_CANCEL_KIND, it->list, keyed,
	    &at)) != 0)
		return r;
	if ((m->cancelled = at != 0))
		return 0;
	if ((r = drop_lookup_txn(v, txn, it->list, it->hash, m->refs,
	    SHARED_MAX, &m->n)) != 0)
		return r;
	/*
	 * Deleted by an earlier run of the same item: the same receipt, also
	 * when a consumer written since holds the identifier again (that write
	 * met the suppression list: opted out of sale and sharing, drop.h).
	 */
	if ((r = by_receipt(txn, it->id, m)) != 0 || m->by_receipt)
		return r;
	if (m->n == 1) {
		if ((r = consent_flags(txn, m->refs[0], &flags)) != 0)
			return r;
		m->held = (flags & CONSENT_LEGAL_HOLD) != 0;
	}
	return 0;
}

/* Opts out of sale and sharing every consumer sharing the identifier. */
static int
opt_out_all(struct vault *v, const struct match *m, const char *principal)
{
	struct consent_change c = { .purpose = -1, .source = "drop",
	    .opt_out_sale_share = FLAG_SET, .principal = principal };
	uint8_t flags;
	bool created;
	int r;

	for (size_t i = 0; i < m->n && i < SHARED_MAX; i++)
		if ((r = consumer_set_consent(v, m->refs[i], &c, &flags,
		    &created)) != 0)
			return r;
	return 0;
}

int
drop_process(struct vault *v, const struct drop_item *items, size_t n,
    const char *principal, struct drop_outcome *out, size_t *bad)
{
	struct deletion_request *reqs = calloc(n, sizeof(*reqs));
	struct receipt *receipts = calloc(n, sizeof(*receipts));
	char (*ids)[sizeof(REQUEST_PREFIX) + DROP_ID_MAX] = calloc(n,
	    sizeof(*ids));
	size_t *which = calloc(n, sizeof(*which)), nd = 0;
	struct match *m = malloc(sizeof(*m));
	struct store_txn *txn = NULL;
	int r = 0;

	*bad = 0;
	if (reqs == NULL || receipts == NULL || ids == NULL || which == NULL ||
	    m == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	memset(out, 0, n * sizeof(*out));
	/* The matches first, each in a snapshot of its own; then the acts. */
	for (size_t i = 0; i < n && r == 0; i++) {
		if ((r = store_read_begin(v->store, &txn)) != 0)
			break;
		r = match_one(v, txn, &items[i], m);
		store_read_end(txn);
		if (r != 0)
			break;
		if (m->cancelled) {
			out[i].status = DROP_ST_CANCELLED;
		} else if (m->n == 0) {
			out[i].status = DROP_ST_NOT_FOUND;
		} else if (m->n > 1) {
			out[i].status = DROP_ST_OPTED_OUT;
			r = opt_out_all(v, m, principal);
		} else if (m->held && !m->by_receipt) {
			out[i].status = DROP_ST_EXEMPTED;
			memcpy(out[i].ref, m->refs[0], CRYPTO_REF_BYTES);
		} else {
			out[i].status = DROP_ST_DELETED;
			memcpy(out[i].ref, m->refs[0], CRYPTO_REF_BYTES);
			snprintf(ids[nd], sizeof(ids[nd]), REQUEST_PREFIX "%s",
			    items[i].id);
			reqs[nd] = (struct deletion_request){ out[i].ref, ids[nd] };
			which[nd++] = i;
		}
	}
	if (r != 0 || nd == 0)
		goto out;
	if ((r = deletion_run(v, reqs, nd, receipts, bad)) != 0) {
		if (r == VAULT_ERR_EXISTS)
			*bad = which[*bad];
		goto out;
	}
	for (size_t j = 0; j < nd; j++) {
		out[which[j]].receipt = receipts[j];
		memset(&receipts[j], 0, sizeof(receipts[j]));
	}
	/* The suppression list: every identifier this call deleted (drop.h). */
	r = writer_submit(v->wr, mark_apply,
	    &(struct mark_job){ v, DROP_SUPPRESS_KIND, items, out, n });
out:
	for (size_t j = 0; receipts != NULL && j < n; j++)
		receipt_clear(&receipts[j]);
	free(reqs);
	free(receipts);
	free(ids);
	free(which);
	free(m);
	return r;
}

void
drop_outcomes_clear(struct drop_outcome *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		receipt_clear(&out[i].receipt);
}
