#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/deletion.h"
#include "api/handlers.h"
#include "engine/rotation.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

static int
send_progress(const struct rotation_progress *p, void *arg)
{
	Vault__V1__RotationProgress msg = VAULT__V1__ROTATION_PROGRESS__INIT;

	msg.rewrapped = p->rewrapped;
	msg.total = p->total;
	msg.done = p->done;
	msg.new_version = p->target;
	return rpc_send(arg, &msg.base);
}

int
handle_rotate_master_key(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__RotateMasterKeyRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct rotation_progress p;
	rotation_cb cb = send_progress;
	unsigned long want = 0;
	char *end, why[200];
	int r;

	if (req->new_key_id[0] != '\0') {
		errno = 0;
		want = strtoul(req->new_key_id, &end, 10);
		if (errno != 0 || *end != '\0' || want == 0 || want > UINT32_MAX)
			return rpc_fail(ctx, VAULT_ERR_INVALID, "new_key_id: a master "
			    "key version number, or empty for the next one");
	}
	rpc_audit_detail(ctx, "rotate to %s", req->new_key_id[0] ? req->new_key_id :
	    "next");
	r = rotation_start(v, (uint32_t)want, &p, why, sizeof(why));
	if (r == VAULT_ERR_STATE)
		return rpc_fail(ctx, r, "%s", why);
	if (r == VAULT_ERR_KEY)
		return rpc_fail(ctx, r, "new_key_id: master-%lu.key cannot be "
		    "loaded from the keys directory (see the server log)", want);
	if (r == VAULT_ERR_LIMIT || r == VAULT_ERR_NOSPACE)
		return rpc_fail(ctx, r, "%s: the rotation did not start, and "
		    "nothing changed", r == VAULT_ERR_LIMIT ? "the store is full" :
		    "disk full");
	if (r != 0)
		return r;
	/* Started: the first message says so, whatever happens next. */
	if (send_progress(&p, ctx) != 0)
		cb = NULL;	/* the caller left; the rotation goes on */
	if ((r = rotation_run(v, cb, ctx)) != 0)
		return rpc_fail(ctx, r, "the rotation to version %u started, then "
		    "stopped (%s); it resumes in the background: see GetKeyStatus",
		    p.target, vault_strerror(r));
	return rpc_cancelled(ctx) ? VAULT_ERR_CANCELLED : 0;
}

static const char *
state_name(const struct key_version *kv, uint32_t active)
{
	if (kv->destroy_pending)
		return "destroying";
	if (kv->destroyed)
		return "destroyed";
	return kv->version == active ? "active" : "decrypt-only";
}

int
handle_get_key_status(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	Vault__V1__GetKeyStatusResponse resp = VAULT__V1__GET_KEY_STATUS_RESPONSE__INIT;
	Vault__V1__RotationProgress rot = VAULT__V1__ROTATION_PROGRESS__INIT;
	struct vault *v = rpc_app(ctx);
	struct key_status ks;
	Vault__V1__KeyVersion *kv = NULL, **ptrs = NULL;
	char (*ids)[24] = NULL;
	size_t n, alloc;
	int r;

	(void)msg;
	if ((r = rotation_key_status(v, &ks)) != 0)
		goto out;
	n = ks.n;
	alloc = n > 0 ? n : 1;
	if ((kv = calloc(alloc, sizeof(*kv))) == NULL ||
	    (ptrs = calloc(alloc, sizeof(*ptrs))) == NULL ||
	    (ids = calloc(alloc, sizeof(*ids))) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		vault__v1__key_version__init(&kv[i]);
		snprintf(ids[i], 24, "master-%u", ks.vs[i].version);
		kv[i].version = ks.vs[i].version;
		kv[i].id = ids[i];
		kv[i].state = (char *)state_name(&ks.vs[i], ks.active);
		kv[i].dek_count = ks.deks[i];
		kv[i].created_at_ms = (int64_t)ks.vs[i].created_ms;
		kv[i].pending_final_deletions = ks.pending[i];
		ptrs[i] = &kv[i];
	}
	resp.n_versions = n;
	resp.versions = ptrs;
	/* The snapshot's: another replica may have rotated a second ago. */
	resp.active_version = ks.active;
	resp.rotation_in_progress = ks.rotating;
	if (ks.rotating) {
		rot.rewrapped = ks.p.rewrapped;
		rot.total = ks.p.total;
		rot.new_version = ks.p.target;
		resp.rotation = &rot;
	}
	resp.receipt_public_key = (ProtobufCBinaryData){ KEYRING_PK_BYTES,
	    (uint8_t *)keyring_receipt_public_key(v->kr) };
	r = rpc_reply(ctx, &resp.base);
out:
	key_status_clear(&ks);
	free(kv);
	free(ptrs);
	free(ids);
	return r;
}

int
handle_destroy_master_key(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__DestroyMasterKeyRequest *req = (const void *)msg;
	Vault__V1__DestroyMasterKeyResponse resp =
	    VAULT__V1__DESTROY_MASTER_KEY_RESPONSE__INIT;
	struct vault *v = rpc_app(ctx);
	uint64_t when = 0;
	char why[200] = "";
	int r;

	if (req->version == 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "version: required");
	rpc_audit_detail(ctx, "destroy version %u", req->version);
	r = rotation_destroy(v, req->version, &when, why, sizeof(why));
	if (r != 0 && why[0] != '\0')
		return rpc_fail(ctx, r, "%s", why);
	if (r != 0)
		return r;
	resp.version = req->version;
	resp.destroyed_at_ms = (int64_t)when;
	return rpc_reply(ctx, &resp.base);
}

int
handle_rotate_consumer_key(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__RotateConsumerKeyRequest *req = (const void *)msg;
	Vault__V1__RotateConsumerKeyResponse resp =
	    VAULT__V1__ROTATE_CONSUMER_KEY_RESPONSE__INIT;
	struct vault *v = rpc_app(ctx);
	uint8_t ref[CRYPTO_REF_BYTES];
	char hex[2 * CRYPTO_REF_BYTES + 1];
	uint32_t gen;
	int r;

	if ((r = handler_consumer_ref(ctx, req->consumer_id, ref)) != 0)
		return r;
	r = rotation_consumer_key(v, ref, &gen);
	if (r == VAULT_ERR_NOT_FOUND)
		return rpc_fail(ctx, r, "consumer not found");
	if (r != 0)
		return r;
	crypto_hex(ref, sizeof(ref), hex);
	resp.consumer_ref = hex;
	resp.dek_generation = gen;
	return rpc_reply(ctx, &resp.base);
}
