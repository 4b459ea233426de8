/*
 * ExportConsumer: the right to know. Every attribute in plaintext, the
 * consents with their source and time, the datasets that received the
 * consumer, and the last 12 months of access from the audit log. The
 * request itself is recorded (kept 24 months, by consumer ref).
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "consent.h"
#include "consumer.h"
#include "dataset.h"
#include "deletion.h"
#include "handlers.h"
#include "record.h"
#include "vault.h"
#include "vault/v1/vault.pb-c.h"

#define HISTORY_MS (365ULL * 86400000ULL)
#define MAX_HISTORY 100000
#define MAX_CONSENTS 64
#define MAX_DATASETS 1024

struct export {
	Vault__V1__ExportConsumerResponse resp;
	Vault__V1__Consent consents[MAX_CONSENTS], *consent_ptrs[MAX_CONSENTS];
	char consent_text[MAX_CONSENTS][2][SCHEMA_NAME_MAX + 1];
	char *datasets[MAX_DATASETS];
	Vault__V1__AccessRecord *history, **history_ptrs;
	struct audit_entry *entries;
	char **names;			/* per entry, its attribute names */
	size_t cap;			/* of the four arrays above */
	uint64_t since;
	uint8_t flags;
};

static int
add_consent(const char *name, size_t len, uint8_t state, uint64_t at_ms,
    const char *source, size_t source_len, void *arg)
{
	struct export *x = arg;
	size_t i = x->resp.n_consents;

	if (len == 6 && memcmp(name, "#flags", 6) == 0) {
		x->flags = state;
		return 0;
	}
	if (i == MAX_CONSENTS || len > SCHEMA_NAME_MAX || source_len > SCHEMA_NAME_MAX)
		return 0;
	memcpy(x->consent_text[i][0], name, len);
	x->consent_text[i][0][len] = '\0';
	memcpy(x->consent_text[i][1], source, source_len);
	x->consent_text[i][1][source_len] = '\0';
	vault__v1__consent__init(&x->consents[i]);
	x->consents[i].purpose = x->consent_text[i][0];
	x->consents[i].granted = state != 0;
	x->consents[i].source = x->consent_text[i][1];
	x->consents[i].updated_at_ms = (int64_t)at_ms;
	x->consent_ptrs[i] = &x->consents[i];
	x->resp.n_consents++;
	return 0;
}

/* Grows the history arrays; the pointers between them are set at the end. */
static int
grow(struct export *x)
{
	size_t cap = x->cap ? x->cap * 2 : 16;
	void *p;

	if ((p = realloc(x->history, cap * sizeof(*x->history))) == NULL)
		return -1;
	x->history = p;
	if ((p = realloc(x->history_ptrs, cap * sizeof(*x->history_ptrs))) == NULL)
		return -1;
	x->history_ptrs = p;
	if ((p = realloc(x->entries, cap * sizeof(*x->entries))) == NULL)
		return -1;
	x->entries = p;
	if ((p = realloc(x->names, cap * sizeof(*x->names))) == NULL)
		return -1;
	x->names = p;
	x->cap = cap;
	return 0;
}

static int
add_access(const struct audit_entry *e, void *arg)
{
	struct export *x = arg;
	size_t i = x->resp.n_access_history;

	if (e->at_ms < x->since)
		return 0;
	if (i == MAX_HISTORY || (i == x->cap && grow(x) != 0))
		return 1;
	x->entries[i] = *e;
	vault__v1__access_record__init(&x->history[i]);
	x->history[i].at_ms = (int64_t)e->at_ms;
	x->resp.n_access_history++;
	return 0;
}

/* The arrays may have moved while growing: point into them only now. */
static void
link_history(struct export *x)
{
	for (size_t i = 0; i < x->resp.n_access_history; i++) {
		struct audit_entry *e = &x->entries[i];
		Vault__V1__AccessRecord *h = &x->history[i];

		h->principal = e->principal;
		h->method = e->method;
		h->purpose = e->purpose;
		h->dataset_id = e->dataset;
		h->outcome = e->outcome;
		if (e->detail[0] != '\0') {
			x->names[i] = e->detail;
			h->n_attribute_names = 1;
			h->attribute_names = &x->names[i];
		}
		x->history_ptrs[i] = h;
	}
}

/* Consents, datasets and created time, in one snapshot. */
static int
read_records(struct vault *v, const uint8_t *ref, struct export *x)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	struct consumer_rec rec;
	int rc, r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((rc = mdb_get(txn, v->store->consumers, &k, &val)) != 0) {
		r = rc == MDB_NOTFOUND ? VAULT_ERR_NOT_FOUND : store_err(v->store, rc, "get");
		goto out;
	}
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = consent_list(v, txn, ref, add_consent, x)) != 0)
		goto out;
	x->resp.created_at_ms = (int64_t)rec.created_ms;
	if ((rc = mdb_cursor_open(txn, v->store->lineage, &cur)) != 0) {
		r = store_err(v->store, rc, "open cursor");
		goto out;
	}
	for (rc = mdb_cursor_get(cur, &k, &val, MDB_SET); rc == 0 &&
	    x->resp.n_datasets < MAX_DATASETS;
	    rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT_DUP)) {
		struct dataset_info ds;

		if (val.mv_size == 4 && dataset_by_number(v, txn,
		    store_get_u32(val.mv_data), &ds) == 0)
			x->datasets[x->resp.n_datasets++] = strdup(ds.id);
	}
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return r;
}

struct know_job {
	struct vault *v;
	const uint8_t *ref;
};

static int
know_apply(MDB_txn *txn, void *arg)
{
	struct know_job *job = arg;

	return requests_log_txn(job->v, txn, "know", job->ref);
}

int
handle_export_consumer(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__ExportConsumerRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct export *x = calloc(1, sizeof(*x));
	Vault__V1__Attribute attrs[SCHEMA_MAX_ATTRS], *attr_ptrs[SCHEMA_MAX_ATTRS];
	struct consumer_values cv = { 0 };
	char hex[2 * CRYPTO_REF_BYTES + 1];
	uint8_t ref[CRYPTO_REF_BYTES];
	struct know_job job = { v, ref };
	int r;

	if (x == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = handler_check_consumer_id(ctx, req->consumer_id)) != 0)
		goto out;
	crypto_consumer_ref(keyring_index_key(v->kr), req->consumer_id,
	    strlen(req->consumer_id), ref);
	rpc_audit_ref(ctx, ref);
	rpc_audit_detail(ctx, "export");
	vault__v1__export_consumer_response__init(&x->resp);
	r = consumer_get(v, req->consumer_id, strlen(req->consumer_id), -1, NULL,
	    0, &cv);
	if (r == VAULT_ERR_NOT_FOUND) {
		r = rpc_fail(ctx, r, "consumer not found");
		goto out;
	}
	x->since = store_now_ms() - HISTORY_MS;
	if (r != 0 || (r = read_records(v, ref, x)) != 0 ||
	    (r = audit_scan(v, 0, ref, add_access, x)) != 0 ||
	    (r = writer_submit(v->wr, know_apply, &job)) != 0)
		goto out;
	link_history(x);
	for (size_t i = 0; i < cv.n; i++) {
		vault__v1__attribute__init(&attrs[i]);
		attrs[i].name = (char *)v->schema->attrs[cv.v[i].attr].name;
		attrs[i].value = (char *)cv.v[i].value;
		attrs[i].updated_at_ms = (int64_t)cv.v[i].updated_ms;
		attr_ptrs[i] = &attrs[i];
	}
	crypto_hex(ref, sizeof(ref), hex);
	x->resp.consumer_ref = hex;
	x->resp.n_attributes = cv.n;
	x->resp.attributes = attr_ptrs;
	x->resp.consents = x->consent_ptrs;
	x->resp.access_history = x->history_ptrs;
	x->resp.datasets = x->datasets;
	x->resp.limit_sensitive = (x->flags & CONSENT_LIMIT_SENSITIVE) != 0;
	x->resp.opt_out_sale_share = (x->flags & CONSENT_OPT_OUT_SALE_SHARE) != 0;
	r = rpc_reply(ctx, &x->resp.base);
out:
	consumer_values_clear(&cv);
	for (size_t i = 0; i < x->resp.n_datasets; i++)
		free(x->datasets[i]);
	free(x->history);
	free(x->history_ptrs);
	free(x->entries);
	free(x->names);
	free(x);
	return r;
}
