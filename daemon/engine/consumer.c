#include <string.h>

#include <sodium.h>

#include <stdlib.h>

#include "engine/consent.h"
#include "util/crashpoint.h"
#include "engine/dataset.h"
#include "engine/lineage.h"
#include "engine/consumer.h"
#include "util/log.h"
#include "engine/record.h"

/* Locked scratch for one job: DEK, seed, one decrypted value. */
struct scratch {
	uint8_t *mem;
	uint8_t *dek, *seed, *value;
};


/* This thread's scratch region; the caller wipes it when done. */
static int
scratch_new(struct scratch *s)
{
	if ((s->mem = crypto_scratch(RECORD_SCRATCH_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	s->dek = s->mem;
	s->seed = s->mem + CRYPTO_KEY_BYTES;
	s->value = s->mem + 2 * CRYPTO_KEY_BYTES;
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

/*
 * The manifest entries of the consumer at ref before a write: its
 * manifest's, or for a consumer written before manifests, those of the
 * records it has now (trusted once, on this first write).
 */
static int
manifest_entries(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct consumer_rec *rec, struct manifest_entry *e, size_t *n)
{
	struct store_cursor *cur = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	struct manifest m;
	int rc, r;

	*n = 0;
	if ((r = consumer_manifest_get(v, txn, ref, rec, &m)) != 0)
		return r;
	if (m.p != NULL)
		return record_manifest_entries(&m, e, RECORD_MANIFEST_ENTRIES, n);
	if ((rc = store_cursor_open(txn, STORE_ATTRS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len < CRYPTO_REF_BYTES ||
		    memcmp(k.data, ref, CRYPTO_REF_BYTES) != 0)
			break;
		if ((r = record_manifest_set(e, n, RECORD_MANIFEST_ENTRIES,
		    (const char *)k.data + CRYPTO_REF_BYTES,
		    k.len - CRYPTO_REF_BYTES, record_attr_updated(&val))) != 0)
			break;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	return r;
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
	if ((r = manifest_entries(v, txn, ref, &rec, e, &n)) != 0)
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

/* Opens the current value of attr into s->value; *found false if unset. */
static int
read_value(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct consumer_rec *rec, struct scratch *s, int attr, bool *found,
    size_t *len)
{
	const char *name = v->schema->attrs[attr].name;
	uint8_t key[RECORD_ATTR_KEY_MAX];
	struct store_val k = { record_attr_key(key, ref, name), key }, val;
	int rc = store_get(txn, STORE_ATTRS, k.data, k.len, &val);

	*found = false;
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	*found = true;
	return record_open_attr(s->dek, ref, name, rec->dek_generation, &val,
	    s->value, SCHEMA_VALUE_MAX + 1, len, NULL);
}

/* Keeps the counts right when a categorical value changes. */
static int
recount(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct consumer_rec *rec, struct scratch *s, const struct attr_in *a)
{
	size_t len;
	bool found;
	int r;

	if (v->schema->attrs[a->attr].feature != FEAT_CATEGORY)
		return 0;
	if ((r = read_value(v, txn, ref, rec, s, a->attr, &found, &len)) != 0)
		return r;
	if (found && len == a->len && memcmp(s->value, a->value, len) == 0)
		return 0;
	if (found && (r = count_adjust(v, txn, a->attr, (char *)s->value, len,
	    -1)) != 0)
		return r;
	return count_adjust(v, txn, a->attr, a->value, a->len, +1);
}

/*
 * A consumer deleted at this ref may still have attribute records waiting
 * for the collector; a new consumer must not inherit them.
 */
static int
drop_leftovers(struct store_txn *txn, const uint8_t *ref)
{
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	int rc = store_get(txn, STORE_GC, k.data, k.len, &val), r;

	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if ((r = store_delete_prefix(txn, STORE_ATTRS, ref,
	    CRYPTO_REF_BYTES)) != 0)
		return r;
	return store_del(txn, STORE_GC, k.data, k.len, NULL, 0);
}

/* A new consumer at ref: its record, with a new DEK and seed in s. */
static int
create_record(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    struct scratch *s, uint8_t crec[RECORD_CONSUMER_BYTES])
{
	int r;

	if ((r = drop_leftovers(txn, ref)) != 0 ||
	    (r = record_new_consumer(v->kr, ref, s->dek, s->seed, crec)) != 0)
		return r;
	return store_put(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, crec,
	    RECORD_CONSUMER_BYTES, 0);
}

int
consumer_ensure_txn(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    bool *created)
{
	struct store_val val;
	uint8_t crec[RECORD_CONSUMER_BYTES], *manifest = NULL;
	struct scratch s = { 0 };
	int rc, r;

	*created = false;
	rc = store_get(txn, STORE_CONSUMERS, ref, CRYPTO_REF_BYTES, &val);
	if (rc != VAULT_ERR_NOT_FOUND)
		return rc;
	/* An ordinary write: refused in the headroom (store.h). */
	if ((r = store_room(v->store)) != 0)
		return r;
	if ((manifest = malloc(RECORD_MANIFEST_MAX)) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = scratch_new(&s)) == 0 &&
	    (r = create_record(v, txn, ref, &s, crec)) == 0 &&
	    (r = manifest_put(v, txn, ref, NULL, 0, manifest)) == 0)
		*created = true;
	if (s.mem != NULL)
		sodium_memzero(s.mem, RECORD_SCRATCH_BYTES);
	free(manifest);
	return r;
}

struct consent_job {
	struct vault *v;
	const uint8_t *ref;
	const struct consent_change *c;
	uint8_t flags;
	bool created;
};

static int
consent_apply(struct store_txn *txn, void *arg)
{
	struct consent_job *job = arg;
	int r;

	/* Consent before data: a later put finds the consumer and its consent. */
	if ((r = consumer_ensure_txn(job->v, txn, job->ref, &job->created)) != 0)
		return r;
	return consent_apply_txn(job->v, txn, job->ref, job->c, &job->flags);
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
	struct manifest_entry *entries;	/* RECORD_MANIFEST_ENTRIES */
	uint8_t *manifest;		/* RECORD_MANIFEST_MAX bytes */
};

static int
put_apply(struct store_txn *txn, void *arg)
{
	struct put_job *job = arg;
	struct vault *v = job->v;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)job->ref }, val;
	struct consumer_rec rec;
	uint8_t key[RECORD_ATTR_KEY_MAX], buf[RECORD_ATTR_MAX];
	uint8_t crec[RECORD_CONSUMER_BYTES];
	uint64_t now = store_now_ms();
	size_t len, n_entries = 0;
	int rc, r;

	job->created = false;
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
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (!job->created &&
	    (r = record_unwrap_dek(v->kr, txn, job->ref, &rec,
	    job->s.dek)) != 0))
		return r;
	if (!job->created && (r = manifest_entries(v, txn, job->ref, &rec,
	    job->entries, &n_entries)) != 0)
		return r;
	for (size_t i = 0; i < job->n; i++) {
		const struct attr_in *a = &job->attrs[i];
		const char *name = v->schema->attrs[a->attr].name;

		if ((r = recount(v, txn, job->ref, &rec, &job->s, a)) != 0 ||
		    (r = record_seal_attr(job->s.dek, job->ref, name,
		    rec.dek_generation, a->value, a->len, now, buf, &len)) != 0)
			return r;
		k = (struct store_val){ record_attr_key(key, job->ref, name),
		    key };
		val = (struct store_val){ len, buf };
		if ((rc = store_put(txn, STORE_ATTRS, k.data, k.len, val.data,
		    val.len, 0)) != 0)
			return rc;
		if ((r = record_manifest_set(job->entries, &n_entries,
		    RECORD_MANIFEST_ENTRIES, name, strlen(name), now)) != 0)
			return r;
	}
	VAULT_CRASH_POINT("put.before_manifest");
	if ((r = manifest_put(v, txn, job->ref, job->entries, n_entries,
	    job->manifest)) != 0)
		return r;
	if (!rec.has_manifest) {
		/* Written before manifests: from now on it has one. */
		crec[0] = RECORD_CONSUMER_MANIFEST;
		k = (struct store_val){ CRYPTO_REF_BYTES, (void *)job->ref };
		val = (struct store_val){ sizeof(crec), crec };
		if ((rc = store_put(txn, STORE_CONSUMERS, k.data, k.len,
		    val.data, val.len, 0)) != 0)
			return rc;
	}
	VAULT_CRASH_POINT("put.after_manifest");
	return 0;
}

int
consumer_put(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    const struct attr_in *attrs, size_t n, bool *created)
{
	struct put_job job = { .v = v, .ref = ref, .attrs = attrs, .n = n };
	int r;

	*created = false;
	if ((job.entries = calloc(RECORD_MANIFEST_ENTRIES,
	    sizeof(*job.entries))) == NULL ||
	    (job.manifest = malloc(RECORD_MANIFEST_MAX)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((r = scratch_new(&job.s)) != 0)
		goto out;
	r = writer_submit(v->wr, put_apply, &job);
	sodium_memzero(job.s.mem, RECORD_SCRATCH_BYTES);
	*created = r == 0 && job.created;
out:
	free(job.entries);
	free(job.manifest);
	return r;
}

/* What walk_records shows of each record: its name and its sealed value. */
typedef int (*record_visit)(void *arg, const struct store_val *name,
    const struct store_val *val);

/*
 * Visits every attribute record of ref in key order: one cursor walk, the
 * records being adjacent (keyed ref | name). A key with no name or one too
 * long for the schema's names is corruption.
 */
static int
walk_records(struct store_txn *txn, const uint8_t *ref, record_visit fn,
    void *arg)
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
			log_error("an attribute record has a malformed key");
			r = VAULT_ERR_STATE;
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

/* The records of the schema's attributes, by attribute index. */
struct in_schema {
	const struct schema *schema;
	struct store_val found[SCHEMA_MAX_ATTRS];
	bool has[SCHEMA_MAX_ATTRS];
};

static int
note_in_schema(void *arg, const struct store_val *name,
    const struct store_val *val)
{
	struct in_schema *s = arg;
	int a = schema_find_attr(s->schema, name->data, name->len);

	if (a >= 0) {
		s->found[a] = *val;
		s->has[a] = true;
	}
	return 0;
}

/*
 * The attribute records to open: wanted ones, or every one the schema has,
 * in that order. One walk over the consumer's records instead of a look-up
 * per wanted name, which cost a descent of the tree each, for names the
 * consumer lacks too. Records outside the schema are passed over
 * (ExportConsumer's collect_all shows them).
 */
static int
collect_attrs(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct manifest *m, const int *attrs, size_t n_attrs, int *idx,
    struct store_val *vals, size_t *count)
{
	size_t n = n_attrs == 0 ? v->schema->n_attrs : n_attrs;
	struct in_schema s = { .schema = v->schema };
	int r;

	*count = 0;
	if ((r = walk_records(txn, ref, note_in_schema, &s)) != 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		int a = n_attrs == 0 ? (int)i : attrs[i];
		const char *name = v->schema->attrs[a].name;

		if ((r = consumer_manifest_agrees(m, name, strlen(name),
		    s.has[a] ? &s.found[a] : NULL)) != 0 || !s.has[a])
			continue;
		vals[*count] = s.found[a];
		idx[(*count)++] = a;
	}
	return r;
}

/* Every record, each checked against the manifest (collect_all). */
struct listing {
	const struct schema *schema;
	const struct manifest *m;
	int *idx;
	struct store_val *names, *vals;
	size_t count;
};

static int
list_record(void *arg, const struct store_val *name,
    const struct store_val *val)
{
	struct listing *l = arg;
	int r;

	if (l->count == CONSUMER_VALUES_MAX) {
		log_error("a consumer has more than %d attribute records",
		    CONSUMER_VALUES_MAX);
		return VAULT_ERR_LIMIT;
	}
	if ((r = consumer_manifest_agrees(l->m, name->data, name->len,
	    val)) != 0)
		return r;
	l->names[l->count] = *name;
	l->idx[l->count] = schema_find_attr(l->schema, name->data, name->len);
	l->vals[l->count++] = *val;
	return 0;
}

/*
 * Every attribute record of ref, in the schema or not (for the right to
 * know); names[i] is the name in the record's key, idx[i] -1 when the
 * schema does not have it.
 */
static int
collect_all(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct manifest *m, int *idx, struct store_val *names,
    struct store_val *vals, size_t *count)
{
	struct listing l = { .schema = v->schema, .m = m, .idx = idx,
	    .names = names, .vals = vals };
	int r = walk_records(txn, ref, list_record, &l);

	*count = l.count;
	/* Each record is listed; so many records: none listed is missing. */
	if (r == 0 && m->p != NULL && l.count != m->n) {
		log_error("attribute records a consumer's manifest lists are "
		    "missing: the store is corrupt or was tampered with");
		r = VAULT_ERR_CRYPTO;
	}
	return r;
}

/*
 * Opens the values into out->buf, which holds total bytes; the names of
 * attributes outside the schema (idx -1, names[i]) go there too.
 */
static int
open_attrs(struct vault *v, const uint8_t *dek, const struct consumer_rec *rec,
    const int *idx, const struct store_val *names, const struct store_val *vals,
    size_t count, size_t total, struct consumer_values *out)
{
	size_t off = 0, len;
	int r;

	for (size_t i = 0; i < count; i++) {
		const char *name;
		uint64_t updated;

		if (idx[i] >= 0) {
			name = v->schema->attrs[idx[i]].name;
		} else {
			memcpy(out->buf + off, names[i].data, names[i].len);
			out->buf[off + names[i].len] = '\0';
			name = (const char *)out->buf + off;
			off += names[i].len + 1;
		}
		if ((r = record_open_attr(dek, out->ref, name, rec->dek_generation,
		    &vals[i], out->buf + off, total - off, &len, &updated)) != 0)
			return r;
		out->v[out->n++] = (struct attr_out){ idx[i], name,
		    (const char *)out->buf + off, len, updated };
		off += len + 1;
	}
	return 0;
}

/* Drops sensitive attributes the consumer limited, for a non-essential purpose. */
static size_t
withhold(struct vault *v, int purpose, uint8_t flags, int *idx,
    struct store_val *vals, size_t count, struct consumer_values *out)
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
		vals[kept++] = vals[i];
	}
	return kept;
}

int
consumer_get(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES], int purpose,
    const int *attrs, size_t n_attrs, struct consumer_values *out)
{
	struct store_val vals[CONSUMER_VALUES_MAX], names[CONSUMER_VALUES_MAX];
	int idx[CONSUMER_VALUES_MAX];
	struct store_txn *txn = NULL;
	struct store_val k, val;
	struct consumer_rec rec;
	struct manifest m;
	uint8_t *dek = NULL, flags = 0;
	size_t count, total = 1;
	bool allowed;
	int rc, r;

	memset(out, 0, sizeof(*out));
	if (n_attrs > SCHEMA_MAX_ATTRS)
		return VAULT_ERR_INVALID;
	memcpy(out->ref, ref, CRYPTO_REF_BYTES);
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	k = (struct store_val){ CRYPTO_REF_BYTES, out->ref };
	if ((rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val)) != 0) {
		r = rc;
		goto out;
	}
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = consumer_manifest_get(v, txn, out->ref, &rec, &m)) != 0)
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
	r = purpose < 0 && n_attrs == 0 ?
	    collect_all(v, txn, out->ref, &m, idx, names, vals, &count) :
	    collect_attrs(v, txn, out->ref, &m, attrs, n_attrs, idx, vals,
	    &count);
	if (r != 0)
		goto out;
	count = withhold(v, purpose, flags, idx, vals, count, out);
	for (size_t i = 0; i < count; i++)
		total += vals[i].len + 1 +
		    (idx[i] < 0 ? names[i].len + 1 : 0);
	/* The DEK, then the values, in this thread's locked scratch region. */
	if ((dek = crypto_scratch(CRYPTO_KEY_BYTES + total)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	out->buf = dek + CRYPTO_KEY_BYTES;
	out->buf_len = total;
	if ((r = record_unwrap_dek(v->kr, txn, out->ref, &rec, dek)) != 0)
		goto out;
	r = open_attrs(v, dek, &rec, idx, names, vals, count, total, out);
out:
	store_read_end(txn);
	if (dek != NULL)
		sodium_memzero(dek, CRYPTO_KEY_BYTES);
	if (r != 0)
		consumer_values_clear(out);
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
	size_t len;
	bool found;
	int r;

	if ((r = record_unwrap_dek(v->kr, txn, ref, rec, s->dek)) != 0)
		return r;
	for (size_t a = 0; a < v->schema->n_attrs; a++) {
		if (v->schema->attrs[a].feature != FEAT_CATEGORY)
			continue;
		if ((r = read_value(v, txn, ref, rec, s, (int)a, &found, &len)) != 0)
			return r;
		if (found && (r = count_adjust(v, txn, (int)a, (char *)s->value,
		    len, -1)) != 0)
			return r;
	}
	return 0;
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
	uint8_t when[8];
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
	/* The values are unreadable now; the collector removes their records. */
	store_put_u64(when, store_now_ms());
	val = (struct store_val){ sizeof(when), when };
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
consumer_collect_txn(struct store_txn *txn, size_t max,
    size_t *collected)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc, r = 0;

	*collected = 0;
	if ((rc = store_cursor_open(txn, STORE_GC, &cur)) != 0)
		return rc;
	while (*collected < max &&
	    (rc = store_cursor_get(cur, &k, &val, STORE_FIRST)) == 0) {
		uint8_t ref[CRYPTO_REF_BYTES];

		if (k.len != CRYPTO_REF_BYTES) {
			r = VAULT_ERR_STATE;
			break;
		}
		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		if ((r = store_delete_prefix(txn, STORE_ATTRS, ref,
		    CRYPTO_REF_BYTES)) != 0)
			break;
		if ((rc = store_cursor_del(cur)) != 0) {
			r = rc;
			break;
		}
		(*collected)++;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
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
