#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit/audit.h"
#include "api/handlers.h"
#include "audit/journal.h"
#include "audit/scan.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

/* ------------------------------------------------ the runtime's audit sink */

/* A call leaves one entry per consumer it touched (or one without a ref). */
static size_t
n_entries(const struct rpc_audit *a)
{
	return a->n_refs ? a->n_refs : 1;
}

/* Entry i of the call's entries. */
static struct audit_rec
entry(const struct rpc_audit *a, size_t i)
{
	return (struct audit_rec){ a->principal, a->method,
	    a->n_refs ? a->refs + i * CRYPTO_REF_BYTES : NULL, a->detail,
	    a->purpose, a->dataset, a->outcome, a->names, a->source };
}

static int
append_all(struct vault *v, struct store_txn *txn, const struct rpc_audit *a)
{
	int r;

	for (size_t i = 0; i < n_entries(a); i++) {
		struct audit_rec rec = entry(a, i);

		if ((r = audit_append_txn(&v->audit, txn, &rec)) != 0)
			return r;
	}
	return 0;
}

struct armed {
	struct vault *v;
	const struct rpc_audit *rec;
};

/* Per handler thread; the writer thread reads it while that thread waits. */
static _Thread_local struct armed armed;

static int
hook(struct store_txn *txn, void *arg)
{
	const struct armed *a = arg;

	return append_all(a->v, txn, a->rec);
}

static void
sink_arm(void *app, const struct rpc_audit *rec)
{
	armed.v = app;
	armed.rec = rec;
	writer_hook_arm(hook, &armed);
}

static bool
sink_disarm(void *app)
{
	bool fired = writer_hook_fired();

	(void)app;
	writer_hook_disarm();
	armed.v = NULL;
	armed.rec = NULL;
	return fired;
}

/*
 * Entries of calls that wrote nothing (reads, denials) go to the audit
 * journal before the reply leaves: one file append, where a store commit
 * cost each read about ten page writes (see journal.h).
 *
 * A stream's first message asks for its entry too: if one of the call's
 * writes already carried it (FetchFeatures: the dataset or the lineage),
 * that is the call's one entry; if not, the journal gets it and the hook
 * is disarmed, so a later write does not add a second.
 */
static int
sink_append(void *app, const struct rpc_audit *a)
{
	struct vault *v = app;
	size_t n = n_entries(a);
	struct audit_rec one, *recs;
	int r;

	if (armed.rec == a) {
		if (writer_hook_fired())
			return 0;
		writer_hook_disarm();
	}
	if ((recs = n == 1 ? &one : calloc(n, sizeof(*recs))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < n; i++)
		recs[i] = entry(a, i);
	r = journal_append(v->audit.jn, recs, n);
	if (recs != &one)
		free(recs);
	return r;
}

const struct rpc_audit_sink audit_sink = { sink_arm, sink_disarm, sink_append };

/* ------------------------------------------------------------- handlers */

struct query {
	struct rpc_ctx *ctx;
	int64_t since, until;
	const char *principal, *method;
	int r;
};

static int
send_entry(const struct audit_entry *e, void *arg)
{
	struct query *q = arg;
	Vault__V1__AuditEntry m = VAULT__V1__AUDIT_ENTRY__INIT;
	char ref[2 * CRYPTO_REF_BYTES + 1] = "", *names[AUDIT_NAMES_MAX];
	char buf[sizeof(e->names)];
	size_t n;

	if ((q->since && (int64_t)e->at_ms < q->since) ||
	    (q->until && (int64_t)e->at_ms >= q->until) ||
	    (q->principal[0] && strcmp(q->principal, e->principal) != 0) ||
	    (q->method[0] && strcmp(q->method, e->method) != 0))
		return 0;
	if (e->has_ref)
		crypto_hex(e->ref, CRYPTO_REF_BYTES, ref);
	memcpy(buf, e->names, sizeof(buf));
	n = audit_split_names(buf, names, AUDIT_NAMES_MAX);
	m.seq = e->seq;
	m.at_ms = (int64_t)e->at_ms;
	m.principal = (char *)e->principal;
	m.method = (char *)e->method;
	m.consumer_ref = ref;
	m.n_attribute_names = n;
	m.attribute_names = names;
	m.purpose = (char *)e->purpose;
	m.outcome = (char *)e->outcome;
	m.prev_hash = (ProtobufCBinaryData){ AUDIT_HASH_BYTES, (uint8_t *)e->prev };
	m.hash = (ProtobufCBinaryData){ AUDIT_HASH_BYTES, (uint8_t *)e->hash };
	m.dataset_id = (char *)e->dataset;
	m.kind = (char *)audit_kind(e->method);
	m.source = (char *)e->source;
	m.detail = (char *)e->detail;
	return (q->r = rpc_send(q->ctx, &m.base)) != 0;
}

int
handle_query_audit(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__QueryAuditRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct query q = { ctx, req->since_ms, req->until_ms, req->principal,
	    req->method, 0 };
	uint8_t ref[CRYPTO_REF_BYTES];
	int r;

	if (req->consumer_id[0] != '\0') {
		/* The id is hashed to its ref: the log never held the id itself. */
		if ((r = handler_consumer_ref(ctx, req->consumer_id, ref)) != 0)
			return r;
	}
	if ((r = audit_scan(&v->audit, 0, req->consumer_id[0] ? ref : NULL, send_entry,
	    &q)) != 0)
		return r;
	return q.r;
}

int
handle_verify_audit(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	Vault__V1__VerifyAuditResponse resp = VAULT__V1__VERIFY_AUDIT_RESPONSE__INIT;
	struct vault *v = rpc_app(ctx);
	uint8_t head[AUDIT_HASH_BYTES], sig[KEYRING_SIG_BYTES];
	char text[256], hex[2 * AUDIT_HASH_BYTES + 1];
	uint64_t entries, bad;
	int r, n;

	(void)msg;
	if ((r = audit_verify(&v->audit, &entries, head, &bad)) != 0)
		return r;
	crypto_hex(head, sizeof(head), hex);
	/* A signed checkpoint: an auditor can keep it outside the vault. */
	n = snprintf(text, sizeof(text), "vaultd audit checkpoint v1\nentries: %llu\n"
	    "head: %s\nok: %s\nat_ms: %llu\n", (unsigned long long)entries, hex,
	    bad == 0 ? "true" : "false", (unsigned long long)store_now_ms());
	keyring_sign(v->kr, (const uint8_t *)text, (size_t)n, sig);
	resp.ok = bad == 0;
	resp.entries = entries;
	resp.head = (ProtobufCBinaryData){ sizeof(head), head };
	resp.first_bad_seq = bad;
	resp.checkpoint = (ProtobufCBinaryData){ (size_t)n, (uint8_t *)text };
	resp.checkpoint_signature = (ProtobufCBinaryData){ sizeof(sig), sig };
	return rpc_reply(ctx, &resp.base);
}
