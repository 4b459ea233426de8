#include <string.h>

#include <sodium.h>

#include <stdatomic.h>
#include <stdlib.h>

#include "engine/consent.h"
#include "engine/drop.h"
#include "util/crashpoint.h"
#include "engine/dataset.h"
#include "engine/ledger.h"
#include "engine/lineage.h"
#include "engine/consumer.h"
#include "util/log.h"
#include "engine/record.h"

/* Locked scratch for one job: DEK and seed (values: consumer_values_take). */
struct scratch {
	uint8_t *mem;
	uint8_t *dek, *seed;
};


/* This thread's scratch region; the caller wipes it when done. */
static int
scratch_new(struct scratch *s)
{
	if ((s->mem = crypto_scratch(RECORD_SCRATCH_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	s->dek = s->mem;
	s->seed = s->mem + CRYPTO_KEY_BYTES;
	return 0;
}

int
consumer_manifest_get(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec, struct manifest *m)
{
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	int rc = store_get(txn, STORE_MANIFESTS, k.data, k.len, &val);

	memset(m, 0, sizeof(*m));
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		return rc;
	if (rec->has_manifest != (rc == 0)) {
		log_error("a consumer's manifest is %s: the store is corrupt or "
		    "was tampered with", rec->has_manifest ? "missing" :
		    "there, but its record says it has none");
		return VAULT_ERR_CRYPTO;
	}
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	return record_manifest_open(keyring_index_key(v->kr), ref, &val, m);
}

int
consumer_manifest_agrees(const struct manifest *m, const char *name,
    size_t len, const struct store_val *val)
{
	uint64_t updated = 0;
	bool listed;

	if (m->p == NULL)
		return 0;
	listed = record_manifest_find(m, name, len, &updated) == 0;
	if (listed == (val != NULL) &&
	    (val == NULL || record_attr_updated(val) == updated))
		return 0;
	log_error("an attribute record %s: the store is corrupt or was "
	    "tampered with", !listed ? "is not in its consumer's manifest" :
	    val == NULL ? "its consumer's manifest lists is missing" :
	    "is not the version its consumer's manifest lists");
	return VAULT_ERR_CRYPTO;
}

static int
manifest_put(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct manifest_entry *e, size_t n, uint8_t *buf)
{
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	int rc;

	val.len = record_manifest_seal(keyring_index_key(v->kr), ref, e, n,
	    buf);
	val.data = buf;
	rc = store_put(txn, STORE_MANIFESTS, k.data, k.len, val.data, val.len,
	    0);
	return rc;
}

int
consumer_manifest_prune_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref)
{
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	struct manifest_entry *e = NULL;
	struct consumer_rec rec;
	struct manifest m;
	uint8_t *buf = NULL;
	size_t n, kept = 0;
	int rc, r;

	if ((rc = store_get(txn, STORE_CONSUMERS, k.data, k.len,
	    &val)) == VAULT_ERR_NOT_FOUND)
		return 0;	/* deleted: the collector takes its records */
	if (rc != 0)
		return rc;
	if ((r = record_parse_consumer(&val, &rec)) != 0 || !rec.has_manifest)
		return r;
	if ((e = calloc(RECORD_MANIFEST_ENTRIES, sizeof(*e))) == NULL ||
	    (buf = malloc(RECORD_MANIFEST_MAX)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	/* Format 2 (has_manifest): its manifest lists its records. */
	if ((r = consumer_manifest_get(v, txn, ref, &rec, &m)) != 0 ||
	    (r = record_manifest_entries(&m, e, RECORD_MANIFEST_ENTRIES,
	    &n)) != 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (schema_find_attr(v->schema, (const char *)e[i].name,
		    e[i].len) >= 0)
			e[kept++] = e[i];
	r = manifest_put(v, txn, ref, e, kept, buf);
out:
	free(e);
	free(buf);
	return r;
}

/* Adds delta to the number of live consumers holding value for attr. */
static int
count_adjust(struct vault *v, struct store_txn *txn, int attr,
    const char *value, size_t len, int delta)
{
	uint8_t key[TOKEN_COUNT_KEY_MAX], buf[8];
	struct store_val k = { tokenizer_count_key(v->tok, attr, value, len,
	    key), key }, val;
	uint64_t n = 0;
	int rc = store_get(txn, STORE_COUNTS, k.data, k.len, &val);

	if (rc == 0 && val.len == 8)
		n = store_get_u64(val.data);
	else if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		return rc;
	if (delta < 0 && n == 0) {
		log_error("a value count would go below zero; counts are corrupt");
		return VAULT_ERR_STATE;
	}
	n = delta < 0 ? n - 1 : n + 1;
	if (n == 0) {
		rc = store_del(txn, STORE_COUNTS, k.data, k.len, NULL, 0);
		return rc;
	}
	store_put_u64(buf, n);
	val = (struct store_val){ sizeof(buf), buf };
	rc = store_put(txn, STORE_COUNTS, k.data, k.len, val.data, val.len, 0);
	return rc;
}

/* Keeps the counts right when a categorical value changes (l: before it). */
static int
recount(struct vault *v, struct store_txn *txn, const struct value_list *l,
    const struct attr_in *a)
{
	const char *name = v->schema->attrs[a->attr].name;
	int e, r;

	if (v->schema->attrs[a->attr].feature != FEAT_CATEGORY)
		return 0;
	e = record_values_find(l, name, strlen(name));
	if (e >= 0 && l->e[e].len == a->len &&
	    memcmp(l->e[e].value, a->value, a->len) == 0)
		return 0;
	if (e >= 0 && (r = count_adjust(v, txn, a->attr,
	    (const char *)l->e[e].value, l->e[e].len, -1)) != 0)
		return r;
	return count_adjust(v, txn, a->attr, a->value, a->len, +1);
}

/*
 * The collection entry of a deleted consumer (STORE_GC): when it was
 * deleted (8 bytes), and GC_LINEAGE_LEFT (1 byte) when its deletion left
 * lineage rows to the collector (lineage.h, LINEAGE_FORGET_INLINE). The
 * rows' keys are found again from the ref, never stored beside it: a
 * lineage key links nothing to a consumer without the vault's keys.
 */
#define GC_LINEAGE_LEFT 1

/* Whether the entry val says lineage rows are left; any other shape too. */
static bool
gc_lineage_left(const struct store_val *val)
{
	if (val->len == 8)
		return false;
	if (val->len != 9 || ((const uint8_t *)val->data)[8] != GC_LINEAGE_LEFT)
		log_error("a collection entry has the wrong shape: its lineage "
		    "rows are looked for");
	return true;
}

static int
no_dataset(const struct dataset_info *ds, void *arg)
{
	(void)ds;
	(void)arg;
	return 0;
}

/*
 * What a deletion at ref left to the collector: its attribute records
 * removed, and, when left says so, its lineage rows added to doomed (found
 * again from the ref) for the caller to forget.
 */
static int
drop_left(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    bool left, struct lineage_doomed *doomed)
{
	int r = store_delete_prefix(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES);

	if (r == 0 && left)
		r = lineage_each(v, txn, ref, doomed, no_dataset, NULL);
	return r;
}

/*
 * A consumer deleted at this ref may still have attribute records and
 * lineage rows waiting for the collector; a new consumer must not inherit
 * them.
 */
static int
drop_leftovers(struct vault *v, struct store_txn *txn, const uint8_t *ref)
{
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	struct lineage_doomed doomed = { 0 };
	int r = store_get(txn, STORE_GC, k.data, k.len, &val);

	if (r == VAULT_ERR_NOT_FOUND)
		return 0;
	if (r == 0 && (r = drop_left(v, txn, ref, gc_lineage_left(&val),
	    &doomed)) == 0 && (r = lineage_forget(txn, &doomed)) == 0)
		r = store_del(txn, STORE_GC, k.data, k.len, NULL, 0);
	lineage_doomed_free(&doomed);
	return r;
}

/*
 * Visits every attribute record of ref of the older layout (keyed ref |
 * name) in key order: one cursor walk, the records being adjacent. A key
 * with no name or one too long for the schema's names is corruption.
 */
static int
walk_records(struct store_txn *txn, const uint8_t *ref,
    int (*fn)(void *arg, const struct store_val *name,
    const struct store_val *val), void *arg)
{
	struct store_cursor *cur = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val, name;
	int rc, r = 0;

	if ((rc = store_cursor_open(txn, STORE_ATTRS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len < CRYPTO_REF_BYTES ||
		    memcmp(k.data, ref, CRYPTO_REF_BYTES) != 0)
			break;
		if (k.len == CRYPTO_REF_BYTES ||
		    k.len - CRYPTO_REF_BYTES >= SCHEMA_NAME_MAX) {
			log_error("an attribute record has a malformed key: "
			    "the store is corrupt or was tampered with");
			r = VAULT_ERR_CRYPTO;
			break;
		}
		name = (struct store_val){ k.len - CRYPTO_REF_BYTES,
		    (uint8_t *)k.data + CRYPTO_REF_BYTES };
		if ((r = fn(arg, &name, &val)) != 0)
			break;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	return r;
}

/* Lists one record of the older layout, checked against the manifest. */
struct legacy_walk {
	const struct manifest *m;
	struct value_list *l;
	const uint8_t *seed;	/* the consumer's sealed seed */
};

static int
list_legacy(void *arg, const struct store_val *name,
    const struct store_val *val)
{
	struct legacy_walk *w = arg;
	struct value_list *l = w->l;
	int r;

	/*
	 * A record's AD is ref | name | generation (record.h), as the seed's
	 * is ref | "seed" | generation under the same DEK: the sealed seed
	 * copied in as a record named "seed" would open, and an export would
	 * show it. A name with a NUL would share the AD of its first part.
	 */
	if (memchr(name->data, '\0', name->len) != NULL ||
	    (val->len == RECORD_ATTR_HDR + RECORD_SEALED_KEY_BYTES &&
	    memcmp((const uint8_t *)val->data + RECORD_ATTR_HDR, w->seed,
	    RECORD_SEALED_KEY_BYTES) == 0)) {
		log_error("an attribute record is not one: the store is corrupt "
		    "or was tampered with");
		return VAULT_ERR_CRYPTO;
	}
	if ((r = consumer_manifest_agrees(w->m, name->data, name->len,
	    val)) != 0)
		return r;
	if (l->n == RECORD_VALUES_ENTRIES) {
		log_error("a consumer has more than %d attribute records",
		    RECORD_VALUES_ENTRIES);
		return VAULT_ERR_LIMIT;
	}
	if (val->len < RECORD_ATTR_HDR + CRYPTO_OVERHEAD ||
	    val->len > RECORD_ATTR_MAX) {
		log_error("an attribute record has an unknown format");
		return VAULT_ERR_CRYPTO;
	}
	/* Keys come in name order: each entry goes at the end. */
	l->e[l->n++] = (struct value_entry){ name->data, name->len,
	    record_attr_updated(val), NULL,
	    val->len - RECORD_ATTR_HDR - CRYPTO_OVERHEAD, *val };
	l->need += val->len - RECORD_ATTR_HDR - CRYPTO_OVERHEAD + 1;
	return 0;
}

int
consumer_values_load(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec, struct value_list *l)
{
	struct store_val val, sealed;
	struct manifest m;
	int rc, r;

	l->n = 0;
	l->need = 0;
	l->one_record = rec->one_record;
	if (rec->one_record) {
		rc = store_get(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, &val);
		if (rc == VAULT_ERR_NOT_FOUND) {
			log_error("a consumer's values record is missing: the store "
			    "is corrupt or was tampered with");
			return VAULT_ERR_CRYPTO;
		}
		if (rc != 0)
			return rc;
		if ((r = record_values_names(&val, l, &sealed)) != 0)
			return r;
		l->head = val;
		l->need = sealed.len - CRYPTO_OVERHEAD;
		return 0;
	}
	if ((r = consumer_manifest_get(v, txn, ref, rec, &m)) != 0 ||
	    (r = walk_records(txn, ref, list_legacy,
	    &(struct legacy_walk){ &m, l, rec->sealed_seed })) != 0)
		return r;
	/* Each record is listed; so many records: none listed is missing. */
	if (m.p != NULL && l->n != m.n) {
		log_error("attribute records a consumer's manifest lists are "
		    "missing: the store is corrupt or was tampered with");
		return VAULT_ERR_CRYPTO;
	}
	return 0;
}

int
consumer_values_open(const uint8_t *ref, const struct consumer_rec *rec,
    const uint8_t *dek, struct value_list *l, uint8_t *plain, size_t cap)
{
	size_t off = 0;
	int r;

	if (cap < l->need)
		return VAULT_ERR_INVALID;
	if (l->one_record)
		return record_values_open(dek, ref, rec->dek_generation, &l->head,
		    plain, cap, l);
	for (size_t i = 0; i < l->n; i++) {
		struct value_entry *e = &l->e[i];
		char name[SCHEMA_NAME_MAX];

		memcpy(name, e->name, e->name_len);
		name[e->name_len] = '\0';
		if ((r = record_open_attr(dek, ref, name, rec->dek_generation,
		    &e->rec, plain + off, cap - off, &e->len, NULL)) != 0)
			return r;
		e->value = plain + off;
		off += e->len + 1;
	}
	return 0;
}

int
consumer_values_take(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, const struct consumer_rec *rec, const uint8_t *dek,
    struct value_list *l, struct values_taken *t)
{
	size_t names = 0, off = 0;
	int r;

	memset(t, 0, sizeof(*t));
	if ((r = consumer_values_load(v, txn, ref, rec, l)) != 0)
		return r;
	if ((t->plain = crypto_scratch_slot(CRYPTO_SCRATCH_VALUES,
	    l->need ? l->need : 1)) == NULL)
		return VAULT_ERR_NOMEM;
	t->plain_len = l->need;
	if ((r = consumer_values_open(ref, rec, dek, l, t->plain,
	    l->need)) != 0)
		return r;
	/* The names point into the store: copied, as the writes move pages. */
	for (size_t i = 0; i < l->n; i++)
		names += l->e[i].name_len;
	if (names > 0 && (t->names = malloc(names)) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < l->n; i++) {
		memcpy(t->names + off, l->e[i].name, l->e[i].name_len);
		l->e[i].name = t->names + off;
		l->e[i].rec = (struct store_val){ 0, NULL };
		off += l->e[i].name_len;
	}
	l->head = (struct store_val){ 0, NULL };
	return 0;
}

void
consumer_values_release(struct values_taken *t)
{
	if (t->plain != NULL)
		sodium_memzero(t->plain, t->plain_len);
	free(t->names);
	memset(t, 0, sizeof(*t));
}

int
consumer_values_put_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, bool one_record, const uint8_t *dek,
    uint32_t generation, const struct value_list *l)
{
	size_t len = record_values_size(l);
	uint8_t *buf;
	int rc, r = 0;

	(void)v;
	if (!one_record) {
		/* The older layout's records and manifest go in the same write. */
		if ((r = store_delete_prefix(txn, STORE_ATTRS, ref,
		    CRYPTO_REF_BYTES)) != 0)
			return r;
		rc = store_del(txn, STORE_MANIFESTS, ref, CRYPTO_REF_BYTES, NULL, 0);
		if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
			return rc;
	}
	if ((buf = malloc(len)) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = record_values_seal(dek, ref, generation, l, buf)) == 0)
		r = store_put(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, buf, len, 0);
	free(buf);
	return r;
}

/* A new consumer at ref: its record, with a new DEK and seed in s. */
static int
create_record(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    struct scratch *s, uint8_t crec[RECORD_CONSUMER_BYTES])
{
	int r;

	if ((r = drop_leftovers(v, txn, ref)) != 0 ||
	    (r = record_new_consumer(v->kr, ref, s->dek, s->seed, crec)) != 0)
		return r;
	return store_put(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, crec,
	    RECORD_CONSUMER_BYTES, 0);
}

int
consumer_ensure_txn(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    bool *created)
{
	static const struct value_list none;
	struct store_val val;
	uint8_t crec[RECORD_CONSUMER_BYTES];
	struct scratch s = { 0 };
	int rc, r;

	*created = false;
	rc = store_get(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, &val);
	if (rc != VAULT_ERR_NOT_FOUND)
		return rc;
	/* An ordinary write: refused in the headroom (store.h). */
	if ((r = store_room(v->store)) != 0)
		return r;
	if ((r = scratch_new(&s)) == 0 &&
	    (r = create_record(v, txn, ref, &s, crec)) == 0 &&
	    (r = consumer_values_put_txn(v, txn, ref, true, s.dek, 1,
	    &none)) == 0)
		*created = true;
	if (s.mem != NULL)
		sodium_memzero(s.mem, RECORD_SCRATCH_BYTES);
	return r;
}

struct consent_job {
	struct vault *v;
	const uint8_t *ref;
	const struct consent_change *c;
	uint8_t flags;
	bool created;
};

/* Within txn: allowed[p], whether the consumer may be used for purpose p. */
static int
allowed_purposes(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    bool *allowed)
{
	uint8_t flags;
	int r;

	for (size_t p = 0; p < v->schema->n_purposes; p++)
		if ((r = consent_allows(v, txn, ref, (int)p, &allowed[p],
		    &flags)) != 0)
			return r;
	return 0;
}

struct revoke_walk {
	struct vault *v;
	struct store_txn *txn;
	const bool *revoked;		/* by purpose */
	const uint8_t *seed;
	uint64_t seq, now;
};

/* A consent ledger event for a dataset of a purpose the consumer left. */
static int
revoke_dataset(const struct dataset_info *ds, void *arg)
{
	struct revoke_walk *w = arg;
	uint8_t pseudonym[TOKEN_PSEUDONYM_BYTES];

	if (ds->purpose < 0 || !w->revoked[ds->purpose])
		return 0;
	tokenizer_pseudonym(w->seed, w->v->schema->purposes[ds->purpose].name,
	    pseudonym);
	return ledger_append_txn(w->txn, LEDGER_CONSENT, w->seq++, w->now,
	    ds->number, pseudonym);
}

/*
 * In the consent change's txn: one consent ledger event (WatchConsent) for
 * each dataset that received the consumer for a purpose it could be used
 * for before the change (before) and not after (after). The consumer's
 * seed is opened only when there is such a purpose. A consumer whose key
 * fails its check still has its consent changed (an opt-out is never
 * refused for damage); its events are left out, which is logged.
 */
static int
log_revocations(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    bool *before, const bool *after)
{
	struct revoke_walk w = { .v = v, .txn = txn, .revoked = before,
	    .now = store_now_ms() };
	uint8_t copy[RECORD_CONSUMER_BYTES];
	struct store_val val;
	struct consumer_rec rec;
	struct scratch s = { 0 };
	bool any = false;
	int rc, r;

	for (size_t p = 0; p < v->schema->n_purposes; p++) {
		before[p] = before[p] && !after[p];
		any = any || before[p];
	}
	if (!any)
		return 0;
	if ((rc = store_get(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES,
	    &val)) != 0)
		return rc;
	if (val.len == sizeof(copy)) {
		memcpy(copy, val.data, sizeof(copy));
		val.data = copy;
	}
	if ((r = scratch_new(&s)) != 0)
		return r;
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = record_unwrap_dek(v->kr, txn, ref, &rec, s.dek)) != 0 ||
	    (r = record_open_seed(s.dek, ref, &rec, s.seed)) != 0) {
		if (r == VAULT_ERR_CRYPTO || r == VAULT_ERR_KEY) {
			log_error("a consent change was recorded without its "
			    "WatchConsent events: the consumer's key failed "
			    "its check");
			r = 0;
		}
		goto out;
	}
	w.seed = s.seed;
	if ((r = ledger_next(txn, LEDGER_CONSENT, &w.seq)) != 0 ||
	    (r = lineage_each(v, txn, ref, NULL, revoke_dataset, &w)) != 0)
		goto out;
	r = ledger_set_next(txn, LEDGER_CONSENT, w.seq);
out:
	sodium_memzero(s.mem, RECORD_SCRATCH_BYTES);
	return r;
}

static int
consent_apply(struct store_txn *txn, void *arg)
{
	struct consent_job *job = arg;
	struct vault *v = job->v;
	size_t n = v->schema->n_purposes;
	bool *allowed;
	int r;

	/* Consent before data: a later put finds the consumer and its consent. */
	if ((r = consumer_ensure_txn(v, txn, job->ref, &job->created)) != 0)
		return r;
	/* A consumer made now has no datasets: nothing to tell. */
	if (job->created || n == 0)
		return consent_apply_txn(v, txn, job->ref, job->c, &job->flags);
	if ((allowed = calloc(2 * n, sizeof(*allowed))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = allowed_purposes(v, txn, job->ref, allowed)) == 0 &&
	    (r = consent_apply_txn(v, txn, job->ref, job->c,
	    &job->flags)) == 0 &&
	    (r = allowed_purposes(v, txn, job->ref, allowed + n)) == 0)
		r = log_revocations(v, txn, job->ref, allowed, allowed + n);
	free(allowed);
	return r;
}

int
consumer_set_consent(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    const struct consent_change *change, uint8_t *flags, bool *created)
{
	struct consent_job job = { .v = v, .ref = ref, .c = change };
	int r;

	r = writer_submit(v->wr, consent_apply, &job);
	if (r == 0)
		VAULT_CRASH_POINT("consent.after_commit");	/* no reply yet */
	*flags = job.flags;
	*created = r == 0 && job.created;
	return r;
}

struct put_job {
	struct vault *v;
	const uint8_t *ref;
	const struct attr_in *attrs;
	size_t n;
	bool created;
	struct scratch s;
	struct value_list *l;
};

/*
 * In a put's txn: an identifier deleted through DROP written again (the
 * suppression list, drop.h) opts the consumer out of sale and sharing,
 * source "drop", until a fresh consent; counted and logged, never named.
 */
static int
suppress(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct drop_forms *before, const struct drop_forms *after,
    uint64_t now)
{
	struct consent_change c = { .purpose = -1, .source = "drop",
	    .opt_out_sale_share = FLAG_SET, .principal = "vaultd" };
	uint8_t flags;
	bool hit;
	int r;

	if ((r = drop_suppressed_txn(v, txn, before, after, now, &hit)) != 0 ||
	    !hit)
		return r;
	if ((r = consent_apply_txn(v, txn, ref, &c, &flags)) != 0)
		return r;
	atomic_fetch_add(&v->drop_suppressed, 1);
	log_info("a write holds an identifier deleted through DROP: the "
	    "consumer is opted out of sale and sharing until a fresh consent");
	return 0;
}

/*
 * In a write txn, once the consumer's values are in one values record:
 * its record crec (a copy), of an older format, becomes format 4, the
 * header bound into the DEK's wrapping (record.h).
 */
static int
bind_record(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    uint8_t crec[RECORD_CONSUMER_BYTES], const uint8_t *dek)
{
	int r;

	crec[0] = RECORD_CONSUMER_BOUND;
	if ((r = record_wrap_dek(v->kr, ref, dek, crec)) != 0)
		return r;
	return store_put(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, crec,
	    RECORD_CONSUMER_BYTES, 0);
}

static int
put_apply(struct store_txn *txn, void *arg)
{
	struct put_job *job = arg;
	struct vault *v = job->v;
	struct value_list *l = job->l;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)job->ref }, val;
	struct values_taken t = { 0 };
	struct consumer_rec rec;
	uint8_t crec[RECORD_CONSUMER_BYTES];
	uint64_t now = store_now_ms();
	struct drop_forms before, after;
	bool drop = drop_enabled(v);
	int rc, r;

	job->created = false;
	l->n = 0;
	/* An ordinary write: refused in the headroom (store.h). */
	if ((r = store_room(v->store)) != 0)
		return r;
	rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val);
	if (rc == 0 && val.len == sizeof(crec))
		memcpy(crec, val.data, sizeof(crec));	/* for a migration */
	if (rc == VAULT_ERR_NOT_FOUND) {
		if ((r = create_record(v, txn, job->ref, &job->s, crec)) != 0)
			return r;
		val = (struct store_val){ sizeof(crec), crec };
		job->created = true;
	} else if (rc != 0) {
		return rc;
	}
	if ((r = record_parse_consumer(&val, &rec)) != 0)
		return r;
	/* The values before the put, opened (the counts need the old ones). */
	if (!job->created &&
	    ((r = record_unwrap_dek(v->kr, txn, job->ref, &rec,
	    job->s.dek)) != 0 ||
	    (r = consumer_values_take(v, txn, job->ref, &rec, job->s.dek, l,
	    &t)) != 0))
		goto out;
	if (drop && !job->created)
		drop_forms_of(v, l, &before);
	for (size_t i = 0; i < job->n && r == 0; i++) {
		const struct attr_in *a = &job->attrs[i];
		const char *name = v->schema->attrs[a->attr].name;

		if ((r = recount(v, txn, l, a)) == 0)
			r = record_values_set(l, (const uint8_t *)name,
			    strlen(name), now, (const uint8_t *)a->value, a->len);
	}
	if (r != 0)
		goto out;
	if (drop) {
		drop_forms_of(v, l, &after);
		if ((r = drop_index_update_txn(txn, job->ref, job->created ?
		    NULL : &before, &after)) != 0 ||
		    (r = suppress(v, txn, job->ref, job->created ? NULL :
		    &before, &after, now)) != 0)
			goto out;
	}
	VAULT_CRASH_POINT("put.before_values");
	if ((r = consumer_values_put_txn(v, txn, job->ref, rec.one_record,
	    job->s.dek, rec.dek_generation, l)) != 0)
		goto out;
	if (rec.format != RECORD_CONSUMER_BOUND &&
	    (r = bind_record(v, txn, job->ref, crec, job->s.dek)) != 0)
		goto out;
	VAULT_CRASH_POINT("put.after_values");
out:
	consumer_values_release(&t);
	return r;
}

int
consumer_put(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    const struct attr_in *attrs, size_t n, bool *created)
{
	struct put_job job = { .v = v, .ref = ref, .attrs = attrs, .n = n };
	int r;

	*created = false;
	if ((job.l = malloc(sizeof(*job.l))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = scratch_new(&job.s)) != 0)
		goto out;
	r = writer_submit(v->wr, put_apply, &job);
	sodium_memzero(job.s.mem, RECORD_SCRATCH_BYTES);
	*created = r == 0 && job.created;
out:
	free(job.l);
	return r;
}

/*
 * The values to give, as entries of l: wanted ones, or every one the
 * schema has, in that order. Values outside the schema are passed over
 * (ExportConsumer's collect_all shows them), and so are expired ones
 * (retention.h), as if never set.
 */
static void
collect_attrs(struct vault *v, const struct value_list *l, const int *attrs,
    size_t n_attrs, int *idx, int *ent, size_t *count)
{
	size_t n = n_attrs == 0 ? v->schema->n_attrs : n_attrs;
	uint64_t now = store_now_ms();

	*count = 0;
	for (size_t i = 0; i < n; i++) {
		int a = n_attrs == 0 ? (int)i : attrs[i];
		const char *name = v->schema->attrs[a].name;
		int e = record_values_find(l, name, strlen(name));

		if (e < 0 || schema_expired(v->schema, a, l->e[e].updated_ms,
		    now))
			continue;
		ent[*count] = e;
		idx[(*count)++] = a;
	}
}

/*
 * Every value of the consumer, in the schema or not (for the right to
 * know), in name order; idx[i] -1 when the schema does not have it.
 */
static void
collect_all(struct vault *v, const struct value_list *l, int *idx, int *ent,
    size_t *count)
{
	for (size_t i = 0; i < l->n; i++) {
		idx[i] = schema_find_attr(v->schema, (const char *)l->e[i].name,
		    l->e[i].name_len);
		ent[i] = (int)i;
	}
	*count = l->n;
}

/* Drops sensitive attributes the consumer limited, for a non-essential purpose. */
static size_t
withhold(struct vault *v, int purpose, uint8_t flags, int *idx, int *ent,
    size_t count, struct consumer_values *out)
{
	size_t kept = 0;

	if (purpose < 0 || !(flags & CONSENT_LIMIT_SENSITIVE) ||
	    v->schema->purposes[purpose].essential)
		return count;
	for (size_t i = 0; i < count; i++) {
		if (v->schema->attrs[idx[i]].sensitive) {
			out->withheld[out->n_withheld++] = idx[i];
			continue;
		}
		idx[kept] = idx[i];
		ent[kept++] = ent[i];
	}
	return kept;
}

int
consumer_get(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES], int purpose,
    const int *attrs, size_t n_attrs, struct consumer_values *out)
{
	int idx[CONSUMER_VALUES_MAX], ent[CONSUMER_VALUES_MAX];
	struct store_txn *txn = NULL;
	struct store_val k, val;
	struct consumer_rec rec;
	struct value_list *l = NULL;
	uint8_t crec[RECORD_CONSUMER_BYTES];
	uint8_t *dek = NULL, *names, flags = 0;
	size_t count, extra = 0;
	bool allowed;
	int rc, r;

	memset(out, 0, sizeof(*out));
	if (n_attrs > SCHEMA_MAX_ATTRS)
		return VAULT_ERR_INVALID;
	if ((l = malloc(sizeof(*l))) == NULL)
		return VAULT_ERR_NOMEM;
	memcpy(out->ref, ref, CRYPTO_REF_BYTES);
	if ((r = store_read_begin(v->store, &txn)) != 0)
		goto out;
	k = (struct store_val){ CRYPTO_REF_BYTES, out->ref };
	if ((rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val)) != 0) {
		r = rc;
		goto out;
	}
	/* Copied: the reads below outlive a store_val (store.h, Lifetime). */
	if (val.len == sizeof(crec)) {
		memcpy(crec, val.data, sizeof(crec));
		val.data = crec;
	}
	if ((r = record_parse_consumer(&val, &rec)) != 0)
		goto out;
	if (purpose >= 0) {
		if ((r = consent_allows(v, txn, out->ref, purpose, &allowed,
		    &flags)) != 0)
			goto out;
		if (!allowed) {
			r = VAULT_ERR_CONSENT;
			goto out;
		}
	}
	/* After the consent's reads: a store_val outlives only a few (store.h). */
	if ((r = consumer_values_load(v, txn, out->ref, &rec, l)) != 0)
		goto out;
	if (purpose < 0 && n_attrs == 0)
		collect_all(v, l, idx, ent, &count);
	else
		collect_attrs(v, l, attrs, n_attrs, idx, ent, &count);
	count = withhold(v, purpose, flags, idx, ent, count, out);
	for (size_t i = 0; i < count; i++)
		if (idx[i] < 0)
			extra += l->e[ent[i]].name_len + 1;
	/*
	 * The DEK, the opened values, and the names of values outside the
	 * schema, in this thread's locked scratch region.
	 */
	if ((dek = crypto_scratch(CRYPTO_KEY_BYTES + l->need + extra)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	out->buf = dek + CRYPTO_KEY_BYTES;
	out->buf_len = l->need + extra;
	if ((r = record_unwrap_dek(v->kr, txn, out->ref, &rec, dek)) != 0 ||
	    (r = consumer_values_open(out->ref, &rec, dek, l, out->buf,
	    l->need)) != 0)
		goto out;
	names = out->buf + l->need;
	for (size_t i = 0; i < count; i++) {
		const struct value_entry *e = &l->e[ent[i]];
		const char *name;

		if (idx[i] >= 0) {
			name = v->schema->attrs[idx[i]].name;
		} else {
			memcpy(names, e->name, e->name_len);
			names[e->name_len] = '\0';
			name = (const char *)names;
			names += e->name_len + 1;
		}
		out->v[out->n++] = (struct attr_out){ idx[i], name,
		    (const char *)e->value, e->len, e->updated_ms };
	}
out:
	store_read_end(txn);
	if (dek != NULL)
		sodium_memzero(dek, CRYPTO_KEY_BYTES);
	if (r != 0)
		consumer_values_clear(out);
	free(l);
	return r;
}

void
consumer_values_clear(struct consumer_values *cv)
{
	if (cv->buf != NULL)
		sodium_memzero(cv->buf, cv->buf_len);
	cv->buf = NULL;
	cv->n = 0;
}

/* Takes the consumer's categorical values out of the counts. */
static int
uncount_all(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct consumer_rec *rec, struct scratch *s)
{
	struct value_list *l = malloc(sizeof(*l));
	struct values_taken t = { 0 };
	int r;

	if (l == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = record_unwrap_dek(v->kr, txn, ref, rec, s->dek)) != 0)
		goto out;
	if ((r = consumer_values_take(v, txn, ref, rec, s->dek, l, &t)) ==
	    VAULT_ERR_CRYPTO) {
		/*
		 * Damage must not block the right to delete: the consumer goes,
		 * its values stay in the counts (vaultd --check reports them).
		 */
		log_error("a consumer's values failed their check; it is "
		    "deleted, but its values stay in the suppression counts "
		    "(vaultd --check reports them)");
		r = 0;
		goto out;
	}
	if (r != 0)
		goto out;
	for (size_t i = 0; i < l->n && r == 0; i++) {
		int a = schema_find_attr(v->schema, (const char *)l->e[i].name,
		    l->e[i].name_len);

		if (a >= 0 && v->schema->attrs[a].feature == FEAT_CATEGORY)
			r = count_adjust(v, txn, a, (const char *)l->e[i].value,
			    l->e[i].len, -1);
	}
	/* Its DROP identifiers leave the index (drop.h). */
	if (r == 0 && drop_enabled(v)) {
		struct drop_forms forms;

		drop_forms_of(v, l, &forms);
		r = drop_index_update_txn(txn, ref, &forms, NULL);
	}
out:
	consumer_values_release(&t);
	free(l);
	return r;
}

struct lineage_out {
	struct vault *v;
	const uint8_t *seed;
	struct removal *out;
	size_t cap;
};

/* Adds a dataset that received the consumer, with the pseudonym it saw. */
static int
add_dataset(const struct dataset_info *ds, void *arg)
{
	struct lineage_out *lo = arg;
	struct removal *out = lo->out;

	if (out->n_datasets == lo->cap) {
		size_t ncap = lo->cap ? lo->cap * 2 : 8;
		uint32_t *d = realloc(out->datasets, ncap * sizeof(*d));
		void *p = d ? realloc(out->pseudonyms, ncap * TOKEN_PSEUDONYM_BYTES) : NULL;

		if (d != NULL)
			out->datasets = d;
		if (p == NULL)
			return VAULT_ERR_NOMEM;
		out->pseudonyms = p;
		lo->cap = ncap;
	}
	out->datasets[out->n_datasets] = ds->number;
	memset(out->pseudonyms[out->n_datasets], 0, TOKEN_PSEUDONYM_BYTES);
	if (ds->purpose >= 0)
		tokenizer_pseudonym(lo->seed, lo->v->schema->purposes[ds->purpose].name,
		    out->pseudonyms[out->n_datasets]);
	out->n_datasets++;
	return 0;
}

int
consumer_remove_txn(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    struct lineage_doomed *doomed, struct removal *out)
{
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	uint8_t copy[RECORD_CONSUMER_BYTES];
	struct consumer_rec rec;
	struct scratch s = { 0 };
	uint8_t gc[9];
	size_t first = doomed->n;
	int rc, r;

	memset(out, 0, sizeof(*out));
	rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val);
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	/* The record is read after the counts are written: a store_val is not. */
	if (val.len == sizeof(copy)) {
		memcpy(copy, val.data, sizeof(copy));
		val.data = copy;
	}
	if ((r = scratch_new(&s)) != 0)
		return r;
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = uncount_all(v, txn, ref, &rec, &s)) != 0 ||
	    (r = record_open_seed(s.dek, ref, &rec, s.seed)) != 0 ||
	    (r = lineage_each(v, txn, ref, doomed, add_dataset,
	    &(struct lineage_out){ v, s.seed, out, 0 })) != 0)
		goto out;
	out->epoch = rec.master_version;
	if ((rc = store_del(txn, STORE_CONSUMERS, k.data, k.len, NULL,
	    0)) != 0) {
		r = rc;
		goto out;
	}
	rc = store_del(txn, STORE_MANIFESTS, k.data, k.len, NULL, 0);
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND) {
		r = rc;
		goto out;
	}
	if ((r = consent_delete_all(txn, ref)) != 0)
		goto out;
	/*
	 * The values are unreadable now; the collector removes their records,
	 * and the consumer's lineage rows when the write already removes
	 * LINEAGE_FORGET_INLINE (lineage.h).
	 */
	store_put_u64(gc, store_now_ms());
	gc[8] = GC_LINEAGE_LEFT;
	val = (struct store_val){ 8, gc };
	if (doomed->n > LINEAGE_FORGET_INLINE) {
		doomed->n = first;
		val.len = 9;
	}
	if ((rc = store_put(txn, STORE_GC, k.data, k.len, val.data, val.len,
	    0)) != 0) {
		r = rc;
		goto out;
	}
	out->found = true;
out:
	if (s.mem != NULL)
		sodium_memzero(s.mem, RECORD_SCRATCH_BYTES);
	return r;
}

void
removal_clear(struct removal *r)
{
	free(r->datasets);
	free(r->pseudonyms);
	memset(r, 0, sizeof(*r));
}

int
consumer_collect_txn(struct vault *v, struct store_txn *txn, size_t max,
    size_t *collected, bool *more)
{
	struct lineage_doomed doomed = { 0 };
	struct store_cursor *cur = NULL;
	struct store_val k, val, live;
	int rc, r = 0;

	*collected = 0;
	*more = false;
	if ((rc = store_cursor_open(txn, STORE_GC, &cur)) != 0)
		return rc;
	while ((rc = store_cursor_get(cur, &k, &val, STORE_FIRST)) == 0) {
		uint8_t ref[CRYPTO_REF_BYTES];
		bool left;

		if (*collected == max || doomed.n >= LINEAGE_FORGET_INLINE) {
			*more = true;
			break;
		}
		if (k.len != CRYPTO_REF_BYTES) {
			r = VAULT_ERR_STATE;
			break;
		}
		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		left = gc_lineage_left(&val);
		/* Never beside a live consumer (create_record drops it). */
		rc = store_get(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, &live);
		if (rc == 0) {
			log_error("a collection entry beside a live consumer: "
			    "dropped, the consumer's records kept");
		} else if (rc != VAULT_ERR_NOT_FOUND) {
			r = rc;
			break;
		} else if ((r = drop_left(v, txn, ref, left, &doomed)) != 0)
			break;
		/* The cursor is placed again: the writes above may move it. */
		if ((rc = store_del(txn, STORE_GC, ref, CRYPTO_REF_BYTES, NULL,
		    0)) != 0) {
			r = rc;
			break;
		}
		(*collected)++;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	/* In key order: the rows of many consumers, a page touched once. */
	if (r == 0)
		r = lineage_forget(txn, &doomed);
	lineage_doomed_free(&doomed);
	return r;
}

int
consumer_export_records(struct vault *v, const uint8_t *ref,
    int (*consent)(const char *name, size_t len, uint8_t state,
    uint64_t at_ms, const char *source, size_t source_len, void *arg),
    int (*dataset)(const struct dataset_info *ds, void *arg), void *arg,
    uint64_t *created_ms)
{
	struct store_txn *txn = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, ref }, val;
	struct consumer_rec rec;
	int r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((r = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val)) != 0 ||
	    (r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = consent_list(txn, ref, consent, arg)) != 0)
		goto out;
	*created_ms = rec.created_ms;
	r = lineage_each(v, txn, ref, NULL, dataset, arg);
	if (r > 0)
		r = 0;
out:
	store_read_end(txn);
	return r;
}

int
consumer_expire_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, uint64_t now_ms, char *names, size_t cap,
    uint64_t *removed)
{
	struct store_val val;
	uint8_t crec[RECORD_CONSUMER_BYTES];
	struct values_taken t = { 0 };
	struct value_list *l = NULL;
	struct consumer_rec rec;
	struct scratch s = { 0 };
	struct drop_forms before, after;
	bool drop = drop_enabled(v);
	size_t off = 0;
	uint32_t gen;
	int rc, r;

	*removed = 0;
	names[0] = '\0';
	rc = store_get(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, &val);
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;		/* deleted: the collector's */
	if (rc != 0)
		return rc;
	if (val.len != sizeof(crec))
		return VAULT_ERR_CRYPTO;
	memcpy(crec, val.data, sizeof(crec));
	val.data = crec;
	if ((l = malloc(sizeof(*l))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = scratch_new(&s)) != 0 ||
	    (r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = record_unwrap_dek(v->kr, txn, ref, &rec, s.dek)) != 0 ||
	    (r = consumer_values_take(v, txn, ref, &rec, s.dek, l, &t)) != 0)
		goto out;
	if (drop)
		drop_forms_of(v, l, &before);
	for (size_t i = 0; i < l->n;) {
		const struct value_entry *e = &l->e[i];
		int a = schema_find_attr(v->schema, (const char *)e->name,
		    e->name_len);

		if (a < 0 || !schema_expired(v->schema, a, e->updated_ms,
		    now_ms)) {
			i++;
			continue;
		}
		if (v->schema->attrs[a].feature == FEAT_CATEGORY &&
		    (r = count_adjust(v, txn, a, (const char *)e->value, e->len,
		    -1)) != 0)
			goto out;
		if (off + e->name_len + 2 <= cap) {
			if (off > 0)
				names[off++] = ',';
			memcpy(names + off, e->name, e->name_len);
			off += e->name_len;
			names[off] = '\0';
		}
		record_values_remove(l, i);
		(*removed)++;
	}
	if (*removed == 0)
		goto out;
	if (drop) {
		drop_forms_of(v, l, &after);
		if ((r = drop_index_update_txn(txn, ref, &before, &after)) != 0)
			goto out;
	}
	/*
	 * Under a new DEK: the record the values leave may outlive the write
	 * (free pages, backups), sealed under the old one, which then goes
	 * the way of any rewrapped key (final once its master version is
	 * destroyed, as a deletion).
	 */
	gen = rec.dek_generation + 1;
	if ((r = record_open_seed(s.dek, ref, &rec, s.seed)) != 0)
		goto out;
	randombytes_buf(s.dek, CRYPTO_KEY_BYTES);
	crec[0] = RECORD_CONSUMER_BOUND;
	store_put_u32(crec + RECORD_CONSUMER_MASTER,
	    keyring_active_version(v->kr));
	store_put_u32(crec + RECORD_CONSUMER_GEN, gen);
	if ((r = record_wrap_dek(v->kr, ref, s.dek, crec)) != 0 ||
	    (r = record_seal_seed(s.dek, ref, gen, s.seed,
	    crec + RECORD_CONSUMER_HDR + RECORD_SEALED_KEY_BYTES)) != 0 ||
	    (r = consumer_values_put_txn(v, txn, ref, rec.one_record, s.dek,
	    gen, l)) != 0)
		goto out;
	r = store_put(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, crec,
	    sizeof(crec), 0);
out:
	consumer_values_release(&t);
	if (s.mem != NULL)
		sodium_memzero(s.mem, RECORD_SCRATCH_BYTES);
	free(l);
	return r;
}
