#include <string.h>

#include <sodium.h>

#include "consumer.h"
#include "handlers.h"
#include "vault.h"
#include "vault/v1/vault.pb-c.h"

#define REQUEST_ID_MAX 128

static const char *
check_request_id(const char *id)
{
	size_t n = strlen(id);

	if (n > REQUEST_ID_MAX)
		return "longer than 128 bytes";
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return "must be printable ASCII without spaces";
	return NULL;
}

int
handle_delete_consumer(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__DeleteConsumerRequest *req = (const void *)msg;
	Vault__V1__DeletionReceipt resp = VAULT__V1__DELETION_RECEIPT__INIT;
	struct vault *v = rpc_app(ctx);
	struct deletion del;
	char ref_hex[CRYPTO_REF_BYTES * 2 + 1], gen_id[33];
	const char *why;
	uint8_t rnd[16];
	int r;

	if ((r = handler_check_consumer_id(ctx, req->consumer_id)) != 0)
		return r;
	if ((why = check_request_id(req->request_id)) != NULL)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "request_id: %s", why);
	if ((r = consumer_delete(v, req->consumer_id, strlen(req->consumer_id),
	    &del)) != 0)
		return r;
	crypto_hex(del.ref, sizeof(del.ref), ref_hex);
	if (req->request_id[0] == '\0') {
		randombytes_buf(rnd, sizeof(rnd));
		crypto_hex(rnd, sizeof(rnd), gen_id);
		resp.request_id = gen_id;
	} else {
		resp.request_id = req->request_id;
	}
	resp.consumer_ref = ref_hex;
	resp.found = del.found;
	resp.deleted_at_ms = (int64_t)del.deleted_at_ms;
	resp.epoch = del.epoch;
	return rpc_reply(ctx, &resp.base);
}
