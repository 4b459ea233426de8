#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "engine/deletion.h"
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
