#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "engine/deletion.h"
#include "engine/dropindex.h"
#include "engine/dropproc.h"
#include "api/handlers.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

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

/* The items as the engine takes them: ids and lists checked, hashes decoded. */
static int
check_drop_items(struct rpc_ctx *ctx, const Vault__V1__ProcessDropListRequest *req,
    struct drop_item *items)
{
	int list = -1;
	const char *why;

	if (req->list_type[0] != '\0' &&
	    (list = drop_list_parse(req->list_type)) < 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "list_type: not a DROP "
		    "list (Email, Phone, MAID, CTVID, NDZ, NameVIN)");
	for (size_t i = 0; i < req->n_items; i++) {
		const Vault__V1__DropItem *it = req->items[i];
		int l = it->list_type[0] != '\0' ?
		    drop_list_parse(it->list_type) : list;

		if ((why = drop_check_id(it->id)) != NULL)
			return rpc_fail(ctx, VAULT_ERR_INVALID, "items[%zu].id: %s",
			    i, why);
		if (l < 0)
			return rpc_fail(ctx, VAULT_ERR_INVALID, "items[%zu].list_type: "
			    "give the list (Email, Phone, MAID, CTVID, NDZ, NameVIN), "
			    "here or in the request", i);
		if (!drop_unb64(it->hash, strlen(it->hash), items[i].hash))
			return rpc_fail(ctx, VAULT_ERR_INVALID, "items[%zu].hash: not "
			    "a SHA-256 in standard padded Base64 (44 characters)", i);
		items[i].id = it->id;
		items[i].list = (enum drop_list)l;
	}
	return 0;
}

/* The consumers the call deleted or exempted, for its audit entries. */
static void
audit_drop_refs(struct rpc_ctx *ctx, const struct drop_outcome *out, size_t n)
{
	uint8_t *refs = malloc(n * CRYPTO_REF_BYTES);
	size_t k = 0;

	if (refs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		if (out[i].status == DROP_ST_DELETED ||
		    out[i].status == DROP_ST_EXEMPTED)
			memcpy(refs + k++ * CRYPTO_REF_BYTES, out[i].ref,
			    CRYPTO_REF_BYTES);
	if (k == 0) {
		free(refs);
		return;
	}
	rpc_audit_refs(ctx, refs, k);	/* the call owns refs now */
}

/* A list is matched only against an index that holds every consumer. */
static int
drop_ready(struct rpc_ctx *ctx, struct vault *v)
{
	bool built;
	int r;

	if (!drop_enabled(v))
		return rpc_fail(ctx, VAULT_ERR_STATE, "no schema attribute is a "
		    "drop_identifier: nothing could match (docs/config.md)");
	if ((r = drop_index_is_built(v, &built)) != 0)
		return r;
	if (!built)
		return rpc_fail(ctx, VAULT_ERR_STATE, "the DROP index is being "
		    "built for the consumers stored before; try again when "
		    "vaultd_drop_index_built is 1");
	return 0;
}

int
handle_process_drop_list(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__ProcessDropListRequest *req = (const void *)msg;
	Vault__V1__ProcessDropListResponse resp =
	    VAULT__V1__PROCESS_DROP_LIST_RESPONSE__INIT;
	struct vault *v = rpc_app(ctx);
	size_t n = req->n_items, bad = 0;
	struct drop_item *items = NULL;
	struct drop_outcome *out = NULL;
	Vault__V1__DropResult *res = NULL, **ptrs = NULL;
	Vault__V1__DeletionReceipt *rcs = NULL;
	int r;

	if (n == 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "items: at least one is "
		    "required");
	if (n > (size_t)v->cfg->max_delete_batch)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "items: at most %d per call",
		    v->cfg->max_delete_batch);
	if ((items = calloc(n, sizeof(*items))) == NULL ||
	    (out = calloc(n, sizeof(*out))) == NULL ||
	    (res = calloc(n, sizeof(*res))) == NULL ||
	    (ptrs = calloc(n, sizeof(*ptrs))) == NULL ||
	    (rcs = calloc(n, sizeof(*rcs))) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((r = check_drop_items(ctx, req, items)) != 0)
		goto out;
	if ((r = drop_ready(ctx, v)) != 0)
		goto out;
	if (req->removed) {
		if ((r = drop_cancel(v, items, n)) != 0)
			goto out;
		for (size_t i = 0; i < n; i++)
			out[i].status = DROP_ST_CANCELLED;
	} else if ((r = drop_process(v, items, n, rpc_principal(ctx)->name, out,
	    &bad)) == VAULT_ERR_EXISTS) {
		r = rpc_fail(ctx, r, "items[%zu]: its request id drop-%s was already "
		    "used for another consumer; nothing was deleted", bad,
		    items[bad].id);
		goto out;
	} else if (r != 0) {
		goto out;
	}
	audit_drop_refs(ctx, out, n);
	for (size_t i = 0; i < n; i++) {
		vault__v1__drop_result__init(&res[i]);
		res[i].id = (char *)items[i].id;
		res[i].status = (Vault__V1__DropStatus)out[i].status;
		if (out[i].status == DROP_ST_DELETED) {
			fill_receipt(&out[i].receipt, &rcs[i]);
			res[i].receipt = &rcs[i];
		}
		ptrs[i] = &res[i];
	}
	resp.n_results = n;
	resp.results = ptrs;
	r = rpc_reply(ctx, &resp.base);
out:
	if (out != NULL)
		drop_outcomes_clear(out, n);
	free(items);
	free(out);
	free(res);
	free(ptrs);
	free(rcs);
	return r;
}
