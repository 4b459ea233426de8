/*
 * ExportConsumer: the right to know. Every attribute in plaintext (those
 * the schema no longer has too, marked), the consents with their source
 * and time, the datasets that received the consumer (for those of ADMT
 * purposes, when they were fetched and with which features), and the last 12
 * months of access from the audit log: the calls about the consumer, and
 * the FetchFeatures calls of the datasets that received it, in time order.
 * The request itself is recorded (kept 24 months, by consumer ref).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/scan.h"
#include "engine/consent.h"
#include "engine/consumer.h"
#include "engine/dataset.h"
#include "engine/requests.h"
#include "api/handlers.h"
#include "engine/record.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

#define HISTORY_MS (365ULL * 86400000ULL)
#define MAX_HISTORY 100000
#define MAX_CONSENTS 64
#define MAX_DATASETS 1024
#define MAX_CHANGES 4096
#define FETCH_METHOD "/vault.v1.Features/FetchFeatures"

/* An ADMT dataset that may have received the consumer, and its use. */
struct admt_out {
	Vault__V1__AdmtUse m;
	char *names[SCHEMA_MAX_ATTRS];	/* into buf */
	char *buf;
};

struct export {
	Vault__V1__ExportConsumerResponse resp;
	Vault__V1__Consent consents[MAX_CONSENTS], *consent_ptrs[MAX_CONSENTS];
	char consent_text[MAX_CONSENTS][2][SCHEMA_NAME_MAX + 1];
	char *datasets[MAX_DATASETS];
	int dataset_purpose[MAX_DATASETS];	/* schema index, or -1 */
	uint32_t dataset_number[MAX_DATASETS];
	struct admt_out *admt;
	Vault__V1__AdmtUse **admt_ptrs;
	Vault__V1__AccessRecord *history, **history_ptrs;
	struct audit_entry *entries;
	size_t n, cap;			/* entries, and room in the three arrays */
	char **names;			/* every entry's names, split */
	uint64_t since;
	uint64_t mark;			/* the audit journal when the call came */
	uint8_t flags;
	bool found;			/* add_release saw a call of the dataset */
	struct consent_event *changes;	/* changes_cap of each */
	Vault__V1__ConsentEvent *events, **event_ptrs;
	size_t changes_cap;
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
	x->cap = cap;
	return 0;
}

/* Keeps e; non-zero (stop) when the history is full. */
static int
keep(struct export *x, const struct audit_entry *e)
{
	if (x->n == MAX_HISTORY || (x->n == x->cap && grow(x) != 0))
		return 1;
	x->entries[x->n++] = *e;
	return 0;
}

/* An entry of the consumer's own: a call about it by consumer id. */
static int
add_access(const struct audit_entry *e, void *arg)
{
	struct export *x = arg;

	return e->at_ms < x->since ? 0 : keep(x, e);
}

/* Outcomes of a FetchFeatures call that may have sent rows. */
static bool
may_have_released(const char *outcome)
{
	return strcmp(outcome, "ok") == 0 || strcmp(outcome, "cancelled") == 0 ||
	    strcmp(outcome, "error") == 0;
}

/* A FetchFeatures call of a dataset that received the consumer. */
static int
add_release(const struct audit_entry *e, void *arg)
{
	struct export *x = arg;

	if (strcmp(e->method, FETCH_METHOD) != 0 || !may_have_released(e->outcome))
		return 0;
	x->found = true;
	return e->at_ms < x->since ? 0 : keep(x, e);
}

/*
 * The calls of each dataset that received the consumer. A dataset whose
 * calls are older than the log's dataset index (vaultd before it had one)
 * still shows: one record of no known time.
 */
static int
add_releases(struct vault *v, struct export *x)
{
	uint8_t key[CRYPTO_REF_BYTES];
	int r;

	for (size_t i = 0; i < x->resp.n_datasets; i++) {
		struct audit_entry e;
		int p = x->dataset_purpose[i];

		if (x->datasets[i] == NULL)
			return VAULT_ERR_NOMEM;
		audit_dataset_key(&v->audit, x->datasets[i], strlen(x->datasets[i]), key);
		x->found = false;
		if ((r = audit_scan_to(&v->audit, x->mark, 0, key, add_release,
		    x)) != 0)
			return r;
		if (x->found)
			continue;
		memset(&e, 0, sizeof(e));
		snprintf(e.method, sizeof(e.method), "%s", FETCH_METHOD);
		snprintf(e.dataset, sizeof(e.dataset), "%s", x->datasets[i]);
		snprintf(e.purpose, sizeof(e.purpose), "%s",
		    p >= 0 ? v->schema->purposes[p].name : "");
		snprintf(e.outcome, sizeof(e.outcome), "ok");
		if (keep(x, &e) != 0)
			break;
	}
	return 0;
}

static int
by_time(const void *a, const void *b)
{
	const struct audit_entry *x = a, *y = b;

	if (x->at_ms != y->at_ms)
		return x->at_ms < y->at_ms ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* An upper bound of the names in a names field. */
static size_t
names_in(const char *s)
{
	size_t n = s[0] != '\0';

	for (; *s != '\0'; s++)
		n += *s == ',';
	return n;
}

/* In time order; the arrays no longer move: point into them now. */
static int
link_history(struct export *x)
{
	size_t total = 0, used = 0;

	qsort(x->entries, x->n, sizeof(*x->entries), by_time);
	for (size_t i = 0; i < x->n; i++)
		total += names_in(x->entries[i].names);
	if (total > 0 && (x->names = calloc(total, sizeof(*x->names))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < x->n; i++) {
		struct audit_entry *e = &x->entries[i];
		Vault__V1__AccessRecord *h = &x->history[i];

		vault__v1__access_record__init(h);
		h->at_ms = (int64_t)e->at_ms;
		h->principal = e->principal;
		h->method = e->method;
		h->purpose = e->purpose;
		h->dataset_id = e->dataset;
		h->outcome = e->outcome;
		h->kind = (char *)audit_kind(e->method);
		h->source = e->source;
		h->audit_seq = e->seq;
		if (x->names != NULL) {
			h->attribute_names = x->names + used;
			h->n_attribute_names = audit_split_names(e->names,
			    h->attribute_names, total - used);
			used += h->n_attribute_names;
		}
		x->history_ptrs[i] = h;
	}
	x->resp.n_access_history = x->n;
	x->resp.access_history = x->history_ptrs;
	return 0;
}

/* Room for one more change: the arrays grow with the history, not ahead. */
static int
grow_changes(struct export *x)
{
	size_t cap = x->changes_cap ? x->changes_cap * 2 : 16;
	void *p;

	if (cap > MAX_CHANGES)
		cap = MAX_CHANGES;
	if ((p = realloc(x->changes, cap * sizeof(*x->changes))) == NULL)
		return VAULT_ERR_NOMEM;
	x->changes = p;
	if ((p = realloc(x->events, cap * sizeof(*x->events))) == NULL)
		return VAULT_ERR_NOMEM;
	x->events = p;
	if ((p = realloc(x->event_ptrs, cap * sizeof(*x->event_ptrs))) == NULL)
		return VAULT_ERR_NOMEM;
	x->event_ptrs = p;
	x->changes_cap = cap;
	return 0;
}

static int
add_change(const struct consent_event *e, void *arg)
{
	struct export *x = arg;
	size_t i = x->resp.n_consent_history;
	Vault__V1__ConsentEvent *m;
	int r;

	if (i == x->changes_cap && (r = grow_changes(x)) != 0)
		return r;
	x->changes[i] = *e;
	m = &x->events[i];
	vault__v1__consent_event__init(m);
	m->at_ms = (int64_t)e->at_ms;
	m->granted = e->granted;
	m->limit_sensitive = (e->flags & CONSENT_LIMIT_SENSITIVE) != 0;
	m->opt_out_sale_share = (e->flags & CONSENT_OPT_OUT_SALE_SHARE) != 0;
	m->opt_out_admt = (e->flags & CONSENT_OPT_OUT_ADMT) != 0;
	x->resp.n_consent_history = i + 1;	/* strings: read_changes */
	return 0;
}

/* The consent history (consent.h), up to MAX_CHANGES of it. */
static int
read_changes(struct vault *v, const uint8_t *ref, struct export *x)
{
	bool more;
	int r;

	r = consent_history(v, ref, MAX_CHANGES, add_change, x, &more);
	/* The events may have moved while the arrays grew: point at them now. */
	for (size_t i = 0; i < x->resp.n_consent_history; i++) {
		x->events[i].purpose = x->changes[i].purpose;
		x->events[i].source = x->changes[i].source;
		x->events[i].principal = x->changes[i].principal;
		x->event_ptrs[i] = &x->events[i];
	}
	x->resp.consent_history = x->event_ptrs;
	x->resp.consent_history_truncated = more;
	return r;
}

static int
add_dataset(const struct dataset_info *ds, void *arg)
{
	struct export *x = arg;

	if (x->resp.n_datasets == MAX_DATASETS)
		return 1;
	x->dataset_purpose[x->resp.n_datasets] = ds->purpose;
	x->dataset_number[x->resp.n_datasets] = ds->number;
	x->datasets[x->resp.n_datasets++] = strdup(ds->id);
	return x->resp.n_datasets == MAX_DATASETS ? 1 : 0;
}

/* Consents, datasets and created time, in one snapshot. */
static int
read_records(struct vault *v, const uint8_t *ref, struct export *x)
{
	uint64_t created = 0;
	int r;

	r = consumer_export_records(v, ref, add_consent, add_dataset, x,
	    &created);
	x->resp.created_at_ms = (int64_t)created;
	return r;
}

/*
 * The datasets of ADMT purposes among those that may have received the
 * consumer, each with when it was fetched and the features it asked for
 * (dataset.h). One fetched before its use was recorded has times 0.
 */
static int
read_admt(struct vault *v, struct export *x)
{
	struct dataset_use *use = NULL;
	size_t n = 0;
	int r = 0;

	for (size_t i = 0; i < x->resp.n_datasets; i++)
		if (x->dataset_purpose[i] >= 0 &&
		    v->schema->purposes[x->dataset_purpose[i]].admt)
			n++;
	if (n == 0)
		return 0;
	if ((x->admt = calloc(n, sizeof(*x->admt))) == NULL ||
	    (x->admt_ptrs = calloc(n, sizeof(*x->admt_ptrs))) == NULL ||
	    (use = malloc(sizeof(*use))) == NULL) {
		free(use);
		return VAULT_ERR_NOMEM;
	}
	for (size_t i = 0; i < x->resp.n_datasets; i++) {
		struct admt_out *a = &x->admt[x->resp.n_admt_uses];
		int p = x->dataset_purpose[i];
		size_t len = 0;

		if (p < 0 || !v->schema->purposes[p].admt)
			continue;
		r = dataset_use_find(v, x->dataset_number[i], use);
		if (r == VAULT_ERR_NOT_FOUND || r == VAULT_ERR_STATE)
			*use = (struct dataset_use){ 0 };
		else if (r != 0)
			break;
		r = 0;
		/* The names, packed: the use record is 16 KiB at most each. */
		for (size_t j = 0; j < use->n; j++)
			len += strlen(use->names[j]) + 1;
		if ((a->buf = malloc(len + 1)) == NULL) {
			r = VAULT_ERR_NOMEM;
			break;
		}
		len = 0;
		for (size_t j = 0; j < use->n; j++) {
			size_t l = strlen(use->names[j]) + 1;

			a->names[j] = memcpy(a->buf + len, use->names[j], l);
			len += l;
		}
		vault__v1__admt_use__init(&a->m);
		a->m.dataset_id = x->datasets[i];
		a->m.purpose = v->schema->purposes[p].name;
		a->m.first_fetched_at_ms = (int64_t)use->first_ms;
		a->m.last_fetched_at_ms = (int64_t)use->last_ms;
		a->m.n_attributes = use->n;
		a->m.attributes = a->names;
		x->admt_ptrs[x->resp.n_admt_uses++] = &a->m;
	}
	free(use);
	x->resp.admt_uses = x->admt_ptrs;
	return r;
}

int
handle_export_consumer(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__ExportConsumerRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct export *x = calloc(1, sizeof(*x));
	Vault__V1__Attribute attrs[CONSUMER_VALUES_MAX];
	Vault__V1__Attribute *attr_ptrs[CONSUMER_VALUES_MAX];
	struct consumer_values cv = { 0 };
	char hex[2 * CRYPTO_REF_BYTES + 1];
	uint8_t ref[CRYPTO_REF_BYTES];
	int r;

	if (x == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = handler_consumer_ref(ctx, req->consumer_id, ref)) != 0)
		goto out;
	/* The calls made before this one are in the history it shows. */
	x->mark = audit_mark(&v->audit);
	vault__v1__export_consumer_response__init(&x->resp);
	r = consumer_get(v, ref, -1, NULL, 0, &cv);
	if (r == VAULT_ERR_NOT_FOUND) {
		r = rpc_fail(ctx, r, "consumer not found");
		goto out;
	}
	x->since = store_now_ms() - HISTORY_MS;
	/*
	 * The request record after the scans: its write group carries this
	 * call's own audit entry, which the history does not show.
	 */
	if (r != 0 || (r = read_records(v, ref, x)) != 0 ||
	    (r = read_admt(v, x)) != 0 ||
	    (r = read_changes(v, ref, x)) != 0 ||
	    (r = audit_scan_to(&v->audit, x->mark, 0, ref, add_access, x)) != 0 ||
	    (r = add_releases(v, x)) != 0 ||
	    (r = requests_log(v, "know", ref)) != 0 ||
	    (r = link_history(x)) != 0)
		goto out;
	for (size_t i = 0; i < cv.n; i++) {
		vault__v1__attribute__init(&attrs[i]);
		attrs[i].name = (char *)cv.v[i].name;
		attrs[i].value = (char *)cv.v[i].value;
		attrs[i].updated_at_ms = (int64_t)cv.v[i].updated_ms;
		attrs[i].outside_schema = cv.v[i].attr < 0;
		attrs[i].expires_at_ms = (int64_t)schema_expires_ms(v->schema,
		    cv.v[i].attr, cv.v[i].updated_ms);
		attr_ptrs[i] = &attrs[i];
	}
	crypto_hex(ref, sizeof(ref), hex);
	x->resp.consumer_ref = hex;
	x->resp.n_attributes = cv.n;
	x->resp.attributes = attr_ptrs;
	x->resp.consents = x->consent_ptrs;
	x->resp.datasets = x->datasets;
	x->resp.limit_sensitive = (x->flags & CONSENT_LIMIT_SENSITIVE) != 0;
	x->resp.opt_out_sale_share = (x->flags & CONSENT_OPT_OUT_SALE_SHARE) != 0;
	x->resp.opt_out_admt = (x->flags & CONSENT_OPT_OUT_ADMT) != 0;
	x->resp.legal_hold = (x->flags & CONSENT_LEGAL_HOLD) != 0;
	r = rpc_reply(ctx, &x->resp.base);
out:
	consumer_values_clear(&cv);
	for (size_t i = 0; i < x->resp.n_datasets; i++)
		free(x->datasets[i]);
	free(x->history);
	free(x->history_ptrs);
	free(x->entries);
	free(x->names);
	for (size_t i = 0; x->admt != NULL && i < x->resp.n_admt_uses; i++)
		free(x->admt[i].buf);
	free(x->admt);
	free(x->admt_ptrs);
	free(x->changes);
	free(x->events);
	free(x->event_ptrs);
	free(x);
	return r;
}
