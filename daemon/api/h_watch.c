/*
 * The feeds of the ledgers (engine/ledger.h): WatchDeletions (consumers
 * deleted) and WatchConsent (consumers that may no longer be used for a
 * dataset's purpose), per dataset, per purpose or for everything, resumed
 * after a sequence number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "engine/dataset.h"
#include "engine/ledger.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

#define WATCH_BATCH 256
#define WATCH_POLL_MS 200

/* The filter: one dataset, or every dataset of one purpose, or everything. */
struct watch_filter {
	uint32_t dataset;		/* 0: any */
	int purpose;			/* -1: any */
	struct dataset_info ds;		/* the dataset, when one is named */
};

/* What both requests hold (the same fields, two message types). */
struct watch_req {
	const char *dataset_id, *purpose;
	uint64_t after_seq;
	bool follow;
};

static int
check_watch(struct rpc_ctx *ctx, struct vault *v,
    const struct watch_req *req, struct watch_filter *f)
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
	f->ds = ds;
	return 0;
}

/* Resolves the batch's datasets (ds[i] for ev[i]; number 0: skip it). */
static int
resolve(struct vault *v, const struct watch_filter *f,
    const struct ledger_event *ev, size_t n, struct dataset_info *ds)
{
	uint32_t nums[WATCH_BATCH];
	int r;

	if (f->dataset != 0) {
		for (size_t i = 0; i < n; i++) {
			ds[i] = f->ds;
			if (ev[i].dataset != f->dataset)
				ds[i].number = 0;
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

/* Sends event e of kind for the dataset ds. */
static int
send_event(struct rpc_ctx *ctx, enum ledger_kind kind,
    const struct ledger_event *e, const struct dataset_info *ds,
    const struct vault *v)
{
	ProtobufCBinaryData p = { TOKEN_PSEUDONYM_BYTES, (uint8_t *)e->pseudonym };

	if (kind == LEDGER_DELETION) {
		Vault__V1__DeletionEvent m = VAULT__V1__DELETION_EVENT__INIT;

		m.seq = e->seq;
		m.dataset_id = (char *)ds->id;
		m.pseudonym = p;
		m.deleted_at_ms = (int64_t)e->at_ms;
		return rpc_send(ctx, &m.base);
	} else {
		Vault__V1__ConsentRevocation m =
		    VAULT__V1__CONSENT_REVOCATION__INIT;

		m.seq = e->seq;
		m.dataset_id = (char *)ds->id;
		m.pseudonym = p;
		m.revoked_at_ms = (int64_t)e->at_ms;
		m.purpose = ds->purpose >= 0 ?
		    (char *)v->schema->purposes[ds->purpose].name : "";
		return rpc_send(ctx, &m.base);
	}
}

/*
 * Streams the events of the ledger of kind after req->after_seq that pass
 * the filter, then (follow) new ones as they come, until the client goes
 * or the server stops.
 */
static int
watch(struct rpc_ctx *ctx, enum ledger_kind kind, const struct watch_req *req)
{
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
		if ((r = ledger_read(v, kind, after, ev, WATCH_BATCH, &n,
		    &expired)) != 0)
			goto out;
		if (after < expired) {
			r = rpc_fail(ctx, VAULT_ERR_STATE, "events through seq %llu "
			    "have expired; resume from there and rebuild the dataset",
			    (unsigned long long)expired);
			goto out;
		}
		if ((r = resolve(v, &f, ev, n, ds)) != 0)
			goto out;
		for (size_t i = 0; i < n; i++) {
			after = ev[i].seq;
			if (ds[i].number != 0 &&
			    (r = send_event(ctx, kind, &ev[i], &ds[i], v)) != 0)
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

int
handle_watch_deletions(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__WatchDeletionsRequest *req = (const void *)msg;

	return watch(ctx, LEDGER_DELETION, &(struct watch_req){ req->dataset_id,
	    req->purpose, req->after_seq, req->follow });
}

int
handle_watch_consent(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__WatchConsentRequest *req = (const void *)msg;

	return watch(ctx, LEDGER_CONSENT, &(struct watch_req){ req->dataset_id,
	    req->purpose, req->after_seq, req->follow });
}
