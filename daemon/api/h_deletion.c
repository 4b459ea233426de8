#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "engine/dataset.h"
#include "engine/deletion.h"
#include "api/handlers.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

#define WATCH_BATCH 256
#define WATCH_POLL_MS 200

static void
fill_receipt(const struct receipt *r, Vault__V1__DeletionReceipt *out)
{
	vault__v1__deletion_receipt__init(out);
	out->request_id = (char *)r->request_id;
	out->consumer_ref = (char *)r->ref_hex;
	out->found = r->found;
	out->deleted_at_ms = (int64_t)r->deleted_at_ms;
	out->epoch = r->epoch;
	out->n_affected_datasets = r->n_datasets;
	out->affected_datasets = r->datasets;
	out->signed_bytes = (ProtobufCBinaryData){ r->signed_len, r->signed_bytes };
	out->signature = (ProtobufCBinaryData){ KEYRING_SIG_BYTES,
	    (uint8_t *)r->signature };
	out->final_at_ms = (int64_t)r->final_at_ms;
	out->audit_head = (char *)r->audit_head;
}

/*
 * Validates requests; each consumer's ref goes to refs (CRYPTO_REF_BYTES
 * each), generated request ids to ids (33 bytes each).
 */
static int
check_requests(struct rpc_ctx *ctx, Vault__V1__DeleteConsumerRequest **in,
    size_t n, struct deletion_request *out, uint8_t *refs, char (*ids)[33])
{
	const char *why;
	int r;

	for (size_t i = 0; i < n; i++) {
		uint8_t *ref = refs + i * CRYPTO_REF_BYTES;

		if ((r = handler_consumer_ref(ctx, in[i]->consumer_id, ref)) != 0) {
			if (n > 1)
				rpc_fail(ctx, r, "requests[%zu].consumer_id: invalid", i);
			return r;
		}
		out[i].ref = ref;
		if (in[i]->request_id[0] == '\0') {
			uint8_t rnd[16];

			randombytes_buf(rnd, sizeof(rnd));
			crypto_hex(rnd, sizeof(rnd), ids[i]);
			out[i].request_id = ids[i];
		} else if ((why = deletion_check_request_id(in[i]->request_id)) != NULL) {
			return rpc_fail(ctx, VAULT_ERR_INVALID, "requests[%zu].request_id: "
			    "%s", i, why);
		} else {
			out[i].request_id = in[i]->request_id;
		}
	}
	return 0;
}

/* Runs the batch and answers with fill(receipts). */
static int
run(struct rpc_ctx *ctx, Vault__V1__DeleteConsumerRequest **in, size_t n,
    bool single)
{
	struct vault *v = rpc_app(ctx);
	struct deletion_request *reqs = calloc(n, sizeof(*reqs));
	struct receipt *out = calloc(n, sizeof(*out));
	char (*ids)[33] = calloc(n, 33);
	Vault__V1__DeletionReceipt *msgs = calloc(n, sizeof(*msgs));
	Vault__V1__DeletionReceipt **ptrs = calloc(n, sizeof(*ptrs));
	Vault__V1__DeleteConsumersResponse resp =
	    VAULT__V1__DELETE_CONSUMERS_RESPONSE__INIT;
	uint8_t *refs = NULL;
	size_t bad = 0;
	int r;

	if (reqs == NULL || out == NULL || ids == NULL || msgs == NULL || ptrs == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((refs = malloc(n * CRYPTO_REF_BYTES)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((r = check_requests(ctx, in, n, reqs, refs, ids)) != 0)
		goto out;
	rpc_audit_refs(ctx, refs, n);	/* the call owns refs now */
	refs = NULL;
	if ((r = deletion_run(v, reqs, n, out, &bad)) == VAULT_ERR_EXISTS) {
		if (single)
			r = rpc_fail(ctx, r, "request_id was already used for another "
			    "consumer; nothing was deleted");
		else
			r = rpc_fail(ctx, r, "requests[%zu].request_id was already used "
			    "for another consumer; nothing was deleted", bad);
		goto out;
	}
	if (r != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		fill_receipt(&out[i], &msgs[i]);
		ptrs[i] = &msgs[i];
	}
	VAULT_CRASH_POINT("delete.before_reply");
	if (single) {
		r = rpc_reply(ctx, &msgs[0].base);
	} else {
		resp.n_receipts = n;
		resp.receipts = ptrs;
		r = rpc_reply(ctx, &resp.base);
	}
	for (size_t i = 0; i < n; i++)
		receipt_clear(&out[i]);
out:
	free(refs);		/* NULL once the call took it */
	free(reqs);
	free(out);
	free(ids);
	free(msgs);
	free(ptrs);
	return r;
}

int
handle_delete_consumer(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	Vault__V1__DeleteConsumerRequest *req = (void *)msg;

	return run(ctx, &req, 1, true);
}

int
handle_delete_consumers(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__DeleteConsumersRequest *req = (const void *)msg;
	const struct vault *v = rpc_app(ctx);

	if (req->n_requests == 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "requests: at least one is "
		    "required");
	if (req->n_requests > (size_t)v->cfg->max_delete_batch)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "requests: at most %d per call",
		    v->cfg->max_delete_batch);
	return run(ctx, req->requests, req->n_requests, false);
}

/* The filter: one dataset, or every dataset of one purpose, or everything. */
struct watch_filter {
	uint32_t dataset;		/* 0: any */
	int purpose;			/* -1: any */
};

static int
check_watch(struct rpc_ctx *ctx, struct vault *v,
    const Vault__V1__WatchDeletionsRequest *req, struct watch_filter *f)
{
	struct dataset_info ds;
	const char *why;
	int r;

	f->dataset = 0;
	f->purpose = -1;
	if (req->dataset_id[0] != '\0' && req->purpose[0] != '\0')
		return rpc_fail(ctx, VAULT_ERR_INVALID, "give dataset_id or purpose, "
		    "not both");
	if (req->purpose[0] != '\0')
		return handler_check_purpose(ctx, req->purpose, &f->purpose);
	if (req->dataset_id[0] == '\0') {
		if (!auth_purpose_allowed(rpc_principal(ctx), "*", 1))
			return rpc_fail(ctx, VAULT_ERR_DENIED, "principal '%s' must "
			    "name a dataset_id or purpose", rpc_principal(ctx)->name);
		return 0;
	}
	if ((why = dataset_check_id(req->dataset_id)) != NULL)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "dataset_id: %s", why);
	r = dataset_find(v, req->dataset_id, &ds);
	if (r == VAULT_ERR_NOT_FOUND)
		return rpc_fail(ctx, r, "dataset_id: no such dataset");
	if (r != 0)
		return r;
	if (ds.purpose < 0 || !auth_purpose_allowed(rpc_principal(ctx),
	    v->schema->purposes[ds.purpose].name,
	    strlen(v->schema->purposes[ds.purpose].name)))
		return rpc_fail(ctx, VAULT_ERR_DENIED, "dataset_id: principal '%s' "
		    "may not use the dataset's purpose", rpc_principal(ctx)->name);
	f->dataset = ds.number;
	return 0;
}

/* Resolves the batch's datasets (ds[i] for ev[i]; number 0: skip it). */
static int
resolve(struct vault *v, const struct watch_filter *f,
    const struct ledger_event *ev, size_t n, const char *dataset_id,
    struct dataset_info *ds)
{
	uint32_t nums[WATCH_BATCH];
	int r;

	if (f->dataset != 0) {
		for (size_t i = 0; i < n; i++) {
			ds[i].number = ev[i].dataset == f->dataset ? f->dataset : 0;
			snprintf(ds[i].id, sizeof(ds[i].id), "%s", dataset_id);
		}
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		nums[i] = ev[i].dataset;
	if ((r = dataset_find_numbers(v, nums, n, ds)) != 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if (f->purpose >= 0 && ds[i].purpose != f->purpose)
			ds[i].number = 0;
	return 0;
}

int
handle_watch_deletions(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__WatchDeletionsRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct ledger_event ev[WATCH_BATCH];
	struct watch_filter f;
	struct dataset_info *ds = NULL;
	uint64_t after = req->after_seq, expired;
	size_t n;
	int r;

	if ((r = check_watch(ctx, v, req, &f)) != 0)
		return r;
	rpc_audit_purpose(ctx, req->purpose);
	rpc_audit_dataset(ctx, req->dataset_id);
	if ((ds = calloc(WATCH_BATCH, sizeof(*ds))) == NULL)
		return VAULT_ERR_NOMEM;
	for (;;) {
		if ((r = ledger_read(v, after, ev, WATCH_BATCH, &n, &expired)) != 0)
			goto out;
		if (after < expired) {
			r = rpc_fail(ctx, VAULT_ERR_STATE, "events through seq %llu "
			    "have expired; resume from there and rebuild the dataset",
			    (unsigned long long)expired);
			goto out;
		}
		if ((r = resolve(v, &f, ev, n, req->dataset_id, ds)) != 0)
			goto out;
		for (size_t i = 0; i < n; i++) {
			Vault__V1__DeletionEvent e = VAULT__V1__DELETION_EVENT__INIT;

			after = ev[i].seq;
			if (ds[i].number == 0)
				continue;
			e.seq = ev[i].seq;
			e.dataset_id = ds[i].id;
			e.pseudonym = (ProtobufCBinaryData){ TOKEN_PSEUDONYM_BYTES,
			    ev[i].pseudonym };
			e.deleted_at_ms = (int64_t)ev[i].deleted_at_ms;
			if ((r = rpc_send(ctx, &e.base)) != 0)
				goto out;
		}
		if (n == WATCH_BATCH)
			continue;
		if (!req->follow) {
			r = 0;
			goto out;
		}
		if (rpc_cancelled(ctx)) {
			r = VAULT_ERR_CANCELLED;
			goto out;
		}
		if (rpc_stopping(ctx)) {
			r = rpc_fail(ctx, VAULT_ERR_UNAVAILABLE, "the server is "
			    "shutting down; resume after seq %llu",
			    (unsigned long long)after);
			goto out;
		}
		rpc_wait(ctx, WATCH_POLL_MS);
	}
out:
	free(ds);
	return r;
}
