#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit/audit.h"
#include "api/handlers.h"
#include "audit/journal.h"
#include "audit/scan.h"
#include "engine/report.h"
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

/* A verification's answer and the memory it points into. */
struct verified {
	Vault__V1__VerifyAuditResponse resp;
	uint8_t head[AUDIT_HASH_BYTES], sig[KEYRING_SIG_BYTES];
	char text[256];
};

/* Checks the whole chain, and signs a checkpoint of what it found. */
static int
verify(struct vault *v, struct verified *out)
{
	char hex[2 * AUDIT_HASH_BYTES + 1];
	uint64_t entries, bad;
	int r, n;

	vault__v1__verify_audit_response__init(&out->resp);
	if ((r = audit_verify(&v->audit, &entries, out->head, &bad)) != 0)
		return r;
	crypto_hex(out->head, sizeof(out->head), hex);
	/* A signed checkpoint: an auditor can keep it outside the vault. */
	n = snprintf(out->text, sizeof(out->text), "vaultd audit checkpoint "
	    "v1\nentries: %llu\nhead: %s\nok: %s\nat_ms: %llu\n",
	    (unsigned long long)entries, hex, bad == 0 ? "true" : "false",
	    (unsigned long long)store_now_ms());
	keyring_sign(v->kr, (const uint8_t *)out->text, (size_t)n, out->sig);
	out->resp.ok = bad == 0;
	out->resp.entries = entries;
	out->resp.head = (ProtobufCBinaryData){ sizeof(out->head), out->head };
	out->resp.first_bad_seq = bad;
	out->resp.checkpoint = (ProtobufCBinaryData){ (size_t)n,
	    (uint8_t *)out->text };
	out->resp.checkpoint_signature = (ProtobufCBinaryData){
	    sizeof(out->sig), out->sig };
	return 0;
}

int
handle_verify_audit(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	struct vault *v = rpc_app(ctx);
	struct verified vr;
	int r;

	(void)msg;
	if ((r = verify(v, &vr)) != 0)
		return r;
	return rpc_reply(ctx, &vr.resp.base);
}

#define DAY_MS 86400000LL

/* The report's messages, pointing into rep. */
struct report_out {
	Vault__V1__AuditReportResponse resp;
	Vault__V1__PrincipalActivity *pa, **pa_ptrs;
	Vault__V1__DatasetActivity *da, **da_ptrs;
	Vault__V1__AuditEvent *ev, **ev_ptrs;
	Vault__V1__Anomaly *an, **an_ptrs;
	struct verified vr;
};

static int
fill_report(const struct report *rep, struct report_out *o)
{
	Vault__V1__AuditReportResponse *m = &o->resp;
	size_t np = rep->n_principals, nd = rep->n_datasets,
	    ne = rep->n_events, na = rep->n_anomalies;

	if ((np && ((o->pa = calloc(np, sizeof(*o->pa))) == NULL ||
	    (o->pa_ptrs = calloc(np, sizeof(*o->pa_ptrs))) == NULL)) ||
	    (nd && ((o->da = calloc(nd, sizeof(*o->da))) == NULL ||
	    (o->da_ptrs = calloc(nd, sizeof(*o->da_ptrs))) == NULL)) ||
	    (ne && ((o->ev = calloc(ne, sizeof(*o->ev))) == NULL ||
	    (o->ev_ptrs = calloc(ne, sizeof(*o->ev_ptrs))) == NULL)) ||
	    (na && ((o->an = calloc(na, sizeof(*o->an))) == NULL ||
	    (o->an_ptrs = calloc(na, sizeof(*o->an_ptrs))) == NULL)))
		return VAULT_ERR_NOMEM;
	vault__v1__audit_report_response__init(m);
	m->since_ms = (int64_t)rep->since_ms;
	m->until_ms = (int64_t)rep->until_ms;
	m->anomaly_factor = rep->factor;
	for (size_t i = 0; i < np; i++) {
		vault__v1__principal_activity__init(&o->pa[i]);
		o->pa[i].principal = (char *)rep->principals[i].name;
		o->pa[i].entries = rep->principals[i].entries;
		o->pa[i].denials = rep->principals[i].denials;
		o->pa[i].distinct_consumers = rep->principals[i].distinct;
		o->pa_ptrs[i] = &o->pa[i];
	}
	for (size_t i = 0; i < nd; i++) {
		vault__v1__dataset_activity__init(&o->da[i]);
		o->da[i].dataset_id = (char *)rep->datasets[i].id;
		o->da[i].purpose = (char *)rep->datasets[i].purpose;
		o->da[i].fetches = rep->datasets[i].fetches;
		o->da[i].lineage_rows = rep->datasets[i].lineage_rows;
		o->da_ptrs[i] = &o->da[i];
	}
	for (size_t i = 0; i < ne; i++) {
		vault__v1__audit_event__init(&o->ev[i]);
		o->ev[i].at_ms = (int64_t)rep->events[i].at_ms;
		o->ev[i].principal = (char *)rep->events[i].principal;
		o->ev[i].method = (char *)rep->events[i].method;
		o->ev[i].detail = (char *)rep->events[i].detail;
		o->ev[i].outcome = (char *)rep->events[i].outcome;
		o->ev_ptrs[i] = &o->ev[i];
	}
	for (size_t i = 0; i < na; i++) {
		vault__v1__anomaly__init(&o->an[i]);
		o->an[i].principal = (char *)rep->principals[
		    rep->anomalies[i].principal].name;
		o->an[i].day_ms = (int64_t)rep->anomalies[i].day_ms;
		o->an[i].measure = (char *)rep->anomalies[i].measure;
		o->an[i].value = rep->anomalies[i].value;
		o->an[i].baseline = rep->anomalies[i].baseline;
		o->an_ptrs[i] = &o->an[i];
	}
	m->n_principals = np;
	m->principals = o->pa_ptrs;
	m->n_datasets = nd;
	m->datasets = o->da_ptrs;
	m->n_key_events = ne;
	m->key_events = o->ev_ptrs;
	m->n_anomalies = na;
	m->anomalies = o->an_ptrs;
	m->deletions = rep->deletions;
	m->deletions_pending_final = rep->pending_final;
	m->consent_changes = rep->consent_changes;
	m->gpc_signals = rep->gpc;
	m->admt_opt_outs = rep->admt_opt_outs;
	m->opt_outs = rep->opt_outs;
	m->consumer_key_rotations = rep->consumer_rekeys;
	m->verification = &o->vr.resp;
	m->truncated = rep->truncated;
	return 0;
}

int
handle_audit_report(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__AuditReportRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	int64_t until = req->until_ms ? req->until_ms : (int64_t)store_now_ms();
	int64_t since = req->since_ms ? req->since_ms :
	    until > 30 * DAY_MS ? until - 30 * DAY_MS : 1;
	uint32_t factor = req->anomaly_factor ? req->anomaly_factor :
	    (uint32_t)v->cfg->audit_anomaly_factor;
	struct report_out *o = NULL;
	struct report rep;
	int r;

	if (req->since_ms < 0 || req->until_ms < 0 || since < 0 ||
	    until <= since)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "since_ms must be before "
		    "until_ms, both positive");
	if (until - since > REPORT_MAX_DAYS * DAY_MS)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "the window is at most "
		    "%d days", REPORT_MAX_DAYS);
	if (factor < 2 || factor > 1000)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "anomaly_factor: 2..1000");
	if ((o = calloc(1, sizeof(*o))) == NULL)
		return VAULT_ERR_NOMEM;
	r = report_build(v, (uint64_t)since, (uint64_t)until, factor, &rep);
	if (r == VAULT_ERR_LIMIT)
		r = rpc_fail(ctx, VAULT_ERR_UNAVAILABLE, "another audit report is "
		    "running; try again when it is done");
	else if (r == 0 && (r = verify(v, &o->vr)) == 0 &&
	    (r = fill_report(&rep, o)) == 0) {
		/* The gauge is of the window up to now, not a historical one. */
		if (req->until_ms == 0)
			atomic_store(&v->audit_anomalies,
			    (uint64_t)rep.n_anomalies);
		r = rpc_reply(ctx, &o->resp.base);
	}
	report_free(&rep);
	free(o->pa);
	free(o->pa_ptrs);
	free(o->da);
	free(o->da_ptrs);
	free(o->ev);
	free(o->ev_ptrs);
	free(o->an);
	free(o->an_ptrs);
	free(o);
	return r;
}
