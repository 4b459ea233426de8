/*
 * The audit report (report.h): one pass over the audit log, then the
 * store's datasets, opt-out records and deletion epochs.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/scan.h"
#include "engine/dataset.h"
#include "engine/deletion.h"
#include "engine/lineage.h"
#include "engine/report.h"
#include "engine/requests.h"

#define DAY_MS 86400000ULL
#define WHOLE UINT32_MAX		/* a set key's day: the whole window */

/* A set of (principal, day, consumer ref prefix): who touched whom, when. */
struct seen {
	uint32_t principal, day;
	uint64_t ref;
};

struct seen_set {
	struct seen *slot;
	bool *used;
	size_t cap, n;
};

static uint64_t
seen_hash(const struct seen *s)
{
	uint64_t h = s->ref ^ ((uint64_t)s->principal << 32 | s->day);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static int
seen_grow(struct seen_set *set)
{
	struct seen_set bigger = { .cap = set->cap ? set->cap * 2 : 4096 };

	if ((bigger.slot = calloc(bigger.cap, sizeof(*bigger.slot))) == NULL ||
	    (bigger.used = calloc(bigger.cap, sizeof(*bigger.used))) == NULL) {
		free(bigger.slot);
		return VAULT_ERR_NOMEM;
	}
	for (size_t i = 0; i < set->cap; i++) {
		size_t j;

		if (!set->used[i])
			continue;
		for (j = seen_hash(&set->slot[i]) & (bigger.cap - 1);
		    bigger.used[j]; j = (j + 1) & (bigger.cap - 1))
			;
		bigger.slot[j] = set->slot[i];
		bigger.used[j] = true;
	}
	bigger.n = set->n;
	free(set->slot);
	free(set->used);
	*set = bigger;
	return 0;
}

/* Adds s; *added says whether it was new. */
static int
seen_add(struct seen_set *set, const struct seen *s, bool *added)
{
	size_t j;
	int r;

	*added = false;
	if (set->n == REPORT_MAX_SEEN)
		return VAULT_ERR_LIMIT;
	if (2 * (set->n + 1) > set->cap && (r = seen_grow(set)) != 0)
		return r;
	for (j = seen_hash(s) & (set->cap - 1); set->used[j];
	    j = (j + 1) & (set->cap - 1))
		if (memcmp(&set->slot[j], s, sizeof(*s)) == 0)
			return 0;
	set->slot[j] = *s;
	set->used[j] = true;
	set->n++;
	*added = true;
	return 0;
}

struct build {
	struct vault *v;
	struct report *r;
	uint64_t base_ms;		/* the baseline's first day */
	size_t n_days;			/* from base_ms's day to until's */
	uint64_t *day_entries;		/* per principal, n_days each */
	struct seen_set seen;
	int err;
};

static int
principal_of(struct build *b, const char *name, size_t *out)
{
	struct report *r = b->r;
	struct report_principal *p;
	uint64_t *de;

	for (size_t i = 0; i < r->n_principals; i++)
		if (strcmp(r->principals[i].name, name) == 0) {
			*out = i;
			return 0;
		}
	if (r->n_principals == REPORT_MAX_PRINCIPALS) {
		r->truncated = true;
		return VAULT_ERR_LIMIT;
	}
	if (r->n_principals % 16 == 0) {
		size_t cap = r->n_principals + 16;
		void *np = realloc(r->principals, cap * sizeof(*r->principals));

		if (np == NULL)
			return VAULT_ERR_NOMEM;
		r->principals = np;
		if ((de = realloc(b->day_entries, cap * b->n_days *
		    sizeof(*de))) == NULL)
			return VAULT_ERR_NOMEM;
		b->day_entries = de;
	}
	p = &r->principals[r->n_principals];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	if ((p->day_distinct = calloc(b->n_days, sizeof(uint64_t))) == NULL ||
	    (p->day_denials = calloc(b->n_days, sizeof(uint64_t))) == NULL) {
		free(p->day_distinct);
		return VAULT_ERR_NOMEM;
	}
	memset(b->day_entries + r->n_principals * b->n_days, 0,
	    b->n_days * sizeof(uint64_t));
	*out = r->n_principals++;
	return 0;
}

static int
dataset_count(struct report *r, const char *id, const char *purpose)
{
	struct report_dataset *d;

	for (size_t i = 0; i < r->n_datasets; i++)
		if (strcmp(r->datasets[i].id, id) == 0) {
			r->datasets[i].fetches++;
			return 0;
		}
	if (r->n_datasets == REPORT_MAX_DATASETS) {
		r->truncated = true;
		return 0;
	}
	if (r->n_datasets % 64 == 0) {
		void *nd = realloc(r->datasets, (r->n_datasets + 64) *
		    sizeof(*r->datasets));

		if (nd == NULL)
			return VAULT_ERR_NOMEM;
		r->datasets = nd;
	}
	d = &r->datasets[r->n_datasets++];
	memset(d, 0, sizeof(*d));
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->purpose, sizeof(d->purpose), "%s", purpose);
	d->fetches = 1;
	return 0;
}

static int
key_event(struct report *r, const struct audit_entry *e)
{
	struct report_event *ev;

	if (r->n_events == REPORT_MAX_KEY_EVENTS) {
		r->truncated = true;
		return 0;
	}
	if (r->n_events % 16 == 0) {
		void *n = realloc(r->events, (r->n_events + 16) *
		    sizeof(*r->events));

		if (n == NULL)
			return VAULT_ERR_NOMEM;
		r->events = n;
	}
	ev = &r->events[r->n_events++];
	ev->at_ms = e->at_ms;
	memcpy(ev->principal, e->principal, sizeof(ev->principal));
	memcpy(ev->method, e->method, sizeof(ev->method));
	memcpy(ev->detail, e->detail, sizeof(ev->detail));
	memcpy(ev->outcome, e->outcome, sizeof(ev->outcome));
	return 0;
}

/* What the entry adds to the window's counts (e is in the window). */
static int
count_kind(struct report *r, const struct audit_entry *e)
{
	const char *kind = audit_kind(e->method);
	bool ok = strcmp(e->outcome, "ok") == 0;

	if (!ok)
		return 0;
	if (strcmp(kind, "feature_release") == 0 && e->dataset[0] != '\0')
		return dataset_count(r, e->dataset, e->purpose);
	if (strcmp(kind, "delete") == 0 && e->has_ref)
		r->deletions++;
	else if (strcmp(kind, "consent") == 0) {
		r->consent_changes++;
		r->gpc += strcmp(e->source, "gpc") == 0;
		r->admt_opt_outs += strcmp(e->source, "admt_opt_out") == 0;
	} else if (strcmp(kind, "rekey") == 0)
		r->consumer_rekeys++;
	else if (strcmp(kind, "key_rotation") == 0 ||
	    strcmp(kind, "key_destruction") == 0)
		return key_event(r, e);
	return 0;
}

static int
visit(const struct audit_entry *e, void *arg)
{
	struct build *b = arg;
	struct report *r = b->r;
	struct report_principal *p;
	bool window, added, denial;
	struct seen s;
	size_t pi, day;
	int err;

	if (e->at_ms < b->base_ms || e->at_ms >= r->until_ms)
		return 0;
	if ((err = principal_of(b, e->principal, &pi)) != 0) {
		if (err == VAULT_ERR_LIMIT)
			return 0;
		b->err = err;
		return 1;
	}
	p = &r->principals[pi];
	day = (size_t)(e->at_ms / DAY_MS - b->base_ms / DAY_MS);
	window = e->at_ms >= r->since_ms;
	denial = strcmp(e->outcome, "denied") == 0 ||
	    strcmp(e->outcome, "unauthenticated") == 0;
	b->day_entries[pi * b->n_days + day]++;
	p->day_denials[day] += denial;
	if (e->has_ref) {
		s = (struct seen){ (uint32_t)pi, (uint32_t)day, 0 };
		memcpy(&s.ref, e->ref, sizeof(s.ref));
		/* Past the cap the counts stay lower bounds (truncated). */
		err = seen_add(&b->seen, &s, &added);
		p->day_distinct[day] += err == 0 && added;
		s.day = WHOLE;
		if (err == 0 && window)
			err = seen_add(&b->seen, &s, &added);
		p->distinct += err == 0 && window && added;
		if (err == VAULT_ERR_LIMIT)
			r->truncated = true;
		else if (err != 0)
			goto fail;
	}
	if (!window)
		return 0;
	p->entries++;
	p->denials += denial;
	if ((err = count_kind(r, e)) != 0)
		goto fail;
	return 0;
fail:
	b->err = err;
	return 1;
}

static int
add_anomaly(struct report *r, size_t pi, uint64_t day_ms, const char *measure,
    uint64_t value, double baseline)
{
	struct report_anomaly *a;

	if (r->n_anomalies % 16 == 0) {
		void *n = realloc(r->anomalies, (r->n_anomalies + 16) *
		    sizeof(*r->anomalies));

		if (n == NULL)
			return VAULT_ERR_NOMEM;
		r->anomalies = n;
	}
	a = &r->anomalies[r->n_anomalies++];
	*a = (struct report_anomaly){ pi, day_ms, measure, value, baseline };
	return 0;
}

/* Each day of the window against the 7 days before it (report.h). */
static int
find_anomalies(struct build *b)
{
	struct report *r = b->r;
	size_t first = (size_t)(r->since_ms / DAY_MS - b->base_ms / DAY_MS);
	int err;

	for (size_t pi = 0; pi < r->n_principals; pi++) {
		const struct report_principal *p = &r->principals[pi];
		const uint64_t *entries = b->day_entries + pi * b->n_days;

		for (size_t d = first; d < b->n_days; d++) {
			const uint64_t *m[2] = { p->day_distinct, p->day_denials };
			static const char *const name[2] = {
				"distinct_consumers", "denials" };
			bool active = false;

			for (size_t k = d - REPORT_BASELINE_DAYS; k < d; k++)
				active = active || entries[k] > 0;
			if (!active)
				continue;
			for (int i = 0; i < 2; i++) {
				double sum = 0, base;

				for (size_t k = d - REPORT_BASELINE_DAYS; k < d; k++)
					sum += (double)m[i][k];
				base = sum / REPORT_BASELINE_DAYS;
				if ((double)m[i][d] <= r->factor *
				    (base > 1.0 ? base : 1.0))
					continue;
				if ((err = add_anomaly(r, pi, (b->base_ms / DAY_MS +
				    d) * DAY_MS, name[i], m[i][d], base)) != 0)
					return err;
			}
		}
	}
	return 0;
}

/* Lineage rows per dataset, opt-outs and pending deletions: one snapshot. */
static int
from_store(struct vault *v, struct report *r)
{
	struct store_txn *txn;
	struct dataset_info ds;
	uint64_t n;
	int err;

	for (size_t i = 0; i < r->n_datasets; i++)
		if ((err = dataset_find(v, r->datasets[i].id, &ds)) == 0)
			r->datasets[i].lineage_rows = ds.number;	/* below */
		else if (err != VAULT_ERR_NOT_FOUND)
			return err;
	if ((err = store_read_begin(v->store, &txn)) != 0)
		return err;
	for (size_t i = 0; i < r->n_datasets && err == 0; i++) {
		uint32_t number = (uint32_t)r->datasets[i].lineage_rows;

		r->datasets[i].lineage_rows = 0;
		if (number != 0)
			err = lineage_count(txn, number,
			    &r->datasets[i].lineage_rows);
	}
	if (err == 0)
		err = requests_count_txn(txn, "optout", r->since_ms,
		    r->until_ms, &r->opt_outs);
	for (uint32_t ver = 1; err == 0 &&
	    ver <= keyring_active_version(v->kr); ver++)
		if ((err = deletion_pending(txn, ver, &n)) == 0)
			r->pending_final += n;
	store_read_end(txn);
	return err;
}

int
report_build(struct vault *v, uint64_t since_ms, uint64_t until_ms,
    uint32_t factor, struct report *out)
{
	static atomic_bool busy;
	struct build b = { .v = v, .r = out };
	int err;

	memset(out, 0, sizeof(*out));
	if (until_ms <= since_ms ||
	    until_ms - since_ms > REPORT_MAX_DAYS * DAY_MS)
		return VAULT_ERR_INVALID;
	if (atomic_exchange(&busy, true))
		return VAULT_ERR_LIMIT;
	out->since_ms = since_ms;
	out->until_ms = until_ms;
	out->factor = factor;
	b.base_ms = since_ms > REPORT_BASELINE_DAYS * DAY_MS ?
	    since_ms - REPORT_BASELINE_DAYS * DAY_MS : 0;
	/* Whole days from base's to until's; the window starts past 7 of them. */
	b.base_ms -= b.base_ms % DAY_MS;
	b.n_days = (size_t)((until_ms - 1) / DAY_MS - b.base_ms / DAY_MS + 1);
	if ((err = audit_scan(&v->audit, 0, NULL, visit, &b)) == 0)
		err = b.err;
	if (err == 0 && since_ms / DAY_MS - b.base_ms / DAY_MS >=
	    REPORT_BASELINE_DAYS)
		err = find_anomalies(&b);
	if (err == 0)
		err = from_store(v, out);
	free(b.seen.slot);
	free(b.seen.used);
	free(b.day_entries);
	atomic_store(&busy, false);
	return err;
}

void
report_free(struct report *r)
{
	for (size_t i = 0; i < r->n_principals; i++) {
		free(r->principals[i].day_distinct);
		free(r->principals[i].day_denials);
	}
	free(r->principals);
	free(r->datasets);
	free(r->events);
	free(r->anomalies);
	memset(r, 0, sizeof(*r));
}
