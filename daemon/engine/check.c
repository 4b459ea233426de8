#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit/audit.h"
#include "engine/check.h"
#include "engine/consent.h"
#include "engine/consumer.h"
#include "engine/dataset.h"
#include "engine/lineage.h"
#include "util/log.h"
#include "engine/record.h"
#include "engine/vault.h"

/* What one kind of record came to. */
struct tally {
	const char *what;
	uint64_t checked, damaged, orphaned;
};

enum { K_CONSUMERS, K_ATTRS, K_MANIFESTS, K_CONSENTS, K_LINEAGE,
	K_LINEAGE_ROWS, K_COUNTS, K_GC, K_AUDIT, K_AUDIT_INDEX, K_META, K_KINDS };

/* One expected suppression count, from a decrypted categorical value. */
struct count {
	uint8_t key[TOKEN_COUNT_KEY_MAX];
	size_t len;
	uint64_t n;
};

struct check {
	struct vault *v;
	struct store_txn *txn;
	struct tally t[K_KINDS];
	struct count *counts;
	size_t n_counts, cap_counts;
	uint64_t pending;	/* attribute records queued for collection */
	uint8_t *mem;		/* locked: DEK, seed */
	struct value_list *values;	/* of the consumer being checked */
	uint8_t *plain;			/* locked: its values, opened */
	size_t plain_cap;
};

/* The store's key order (store.h): bytes, then the shorter first. */
static int
key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c != 0 ? c : alen < blen ? -1 : alen > blen;
}

static int
count_cmp(const void *a, const void *b)
{
	const struct count *x = a, *y = b;

	return key_cmp(x->key, x->len, y->key, y->len);
}

static int
count_add(struct check *c, int attr, const char *value, size_t len)
{
	if (c->n_counts == c->cap_counts) {
		size_t cap = c->cap_counts ? 2 * c->cap_counts : 1024;
		struct count *p = realloc(c->counts, cap * sizeof(*p));

		if (p == NULL)
			return VAULT_ERR_NOMEM;
		c->counts = p;
		c->cap_counts = cap;
	}
	c->counts[c->n_counts].len = tokenizer_count_key(c->v->tok, attr, value,
	    len, c->counts[c->n_counts].key);
	c->counts[c->n_counts++].n = 1;
	return 0;
}

static bool
exists(struct check *c, enum store_space sp, const uint8_t *key, size_t len)
{
	struct store_val k = { len, (void *)key }, val;

	return store_get(c->txn, sp, k.data, k.len, &val) == 0;
}

/* The values of a live consumer, opened: category values count. */
static int
check_values(struct check *c, const uint8_t *ref, const struct consumer_rec *rec)
{
	struct value_list *l = c->values;
	int r;

	if ((r = consumer_values_load(c->v, c->txn, ref, rec, l)) != 0 ||
	    (r = crypto_secret_reserve(&c->plain, &c->plain_cap, l->need)) != 0 ||
	    (r = consumer_values_open(ref, rec, c->mem, l, c->plain,
	    c->plain_cap)) != 0)
		return r;
	for (size_t i = 0; i < l->n && r == 0; i++) {
		int a = schema_find_attr(c->v->schema, (const char *)l->e[i].name,
		    l->e[i].name_len);

		if (a >= 0 && c->v->schema->attrs[a].feature == FEAT_CATEGORY)
			r = count_add(c, a, (const char *)l->e[i].value,
			    l->e[i].len);
	}
	return r;
}

/*
 * A consumer with one values record has no record of the older layout
 * (ref | name): reads would never see one, so one is damage here.
 */
static bool
no_older_records(struct check *c, const uint8_t *ref)
{
	struct store_cursor *cur = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	bool ok = false;
	int rc;

	if (store_cursor_open(c->txn, STORE_ATTRS, &cur) != 0)
		return false;
	rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	if (rc == 0 && k.len == CRYPTO_REF_BYTES)	/* the values record */
		rc = store_cursor_get(cur, &k, &val, STORE_NEXT);
	if (rc == VAULT_ERR_NOT_FOUND)
		ok = true;
	else if (rc == 0)
		ok = k.len < CRYPTO_REF_BYTES ||
		    memcmp(k.data, ref, CRYPTO_REF_BYTES) != 0;
	store_cursor_close(cur);
	return ok;
}

/* A consumer: its keys and its values, whatever its format. */
static bool
check_consumer(struct check *c, const struct store_val *ck,
    const struct store_val *cv)
{
	const uint8_t *ref = ck->data;
	struct consumer_rec rec;
	bool ok = true;

	if (ck->len != CRYPTO_REF_BYTES ||
	    record_parse_consumer(cv, &rec) != 0 ||
	    record_unwrap_dek(c->v->kr, c->txn, ref, &rec, c->mem) != 0 ||
	    record_open_seed(c->mem, ref, &rec, c->mem + CRYPTO_KEY_BYTES) != 0 ||
	    check_values(c, ref, &rec) != 0)
		return false;
	if (rec.one_record && !no_older_records(c, ref)) {
		log_error("a consumer with one values record also has attribute "
		    "records of the older layout");
		ok = false;
	}
	return ok;
}

static void
walk_consumers(struct check *c)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc;

	if (store_cursor_open(c->txn, STORE_CONSUMERS, &cur) != 0) {
		c->t[K_CONSUMERS].damaged++;
		goto out;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		c->t[K_CONSUMERS].checked++;
		if (!check_consumer(c, &k, &val))
			c->t[K_CONSUMERS].damaged++;
	}
	if (rc != VAULT_ERR_NOT_FOUND)
		c->t[K_CONSUMERS].damaged++;
out:
	store_cursor_close(cur);
}

/* The sizes of the records of one database, and their format byte. */
struct shape {
	size_t key_min, key_max, val_min, val_max;
	int fmt;		/* -1: no format byte */
};

/* A lineage value must name a dataset; others are checked by shape only. */
static bool
value_ok(struct check *c, int kind, const struct shape *sh,
    const struct store_val *val)
{
	struct dataset_info ds;

	if (val->len < sh->val_min || val->len > sh->val_max ||
	    (sh->fmt >= 0 && ((const uint8_t *)val->data)[0] != sh->fmt))
		return false;
	return kind != K_LINEAGE || dataset_by_number(c->v, c->txn,
	    store_get_u32(val->data), &ds) == 0;
}

/*
 * Records keyed by ref (| more) must belong to a live consumer; attribute
 * records of a deleted one may wait for the collector.
 */
static void
walk_by_ref(struct check *c, enum store_space sp, int kind,
    const struct shape *sh)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc;

	if (store_cursor_open(c->txn, sp, &cur) != 0) {
		c->t[kind].damaged++;
		return;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		c->t[kind].checked++;
		if (k.len < sh->key_min || k.len > sh->key_max ||
		    !value_ok(c, kind, sh, &val)) {
			c->t[kind].damaged++;
			continue;
		}
		if (exists(c, STORE_CONSUMERS, k.data, CRYPTO_REF_BYTES)) {
			/* A new consumer drops the old one's entry at once. */
			if (kind == K_GC)
				c->t[kind].damaged++;
			continue;
		}
		if (kind == K_ATTRS &&
		    exists(c, STORE_GC, k.data, CRYPTO_REF_BYTES))
			c->pending++;
		else if (kind == K_GC)
			;	/* queued: its consumer is gone, as it should be */
		else
			c->t[kind].orphaned++;
	}
	if (rc != VAULT_ERR_NOT_FOUND)
		c->t[kind].damaged++;
	store_cursor_close(cur);
}

/*
 * lineage.h's rows: by shape, each of a dataset on record. Whose row it is
 * cannot be told from the row (position and tag are keyed hashes of the
 * ref), so none counts as orphaned.
 */
static void
walk_lineage_rows(struct check *c)
{
	struct tally *t = &c->t[K_LINEAGE_ROWS];
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	struct dataset_info ds;
	uint32_t seen = 0;
	bool any = false;
	int rc;

	if (store_cursor_open(c->txn, STORE_LINEAGE_ROWS, &cur) != 0) {
		t->damaged++;
		return;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		uint32_t number;

		t->checked++;
		if (k.len != LINEAGE_KEY_BYTES || val.len != 0) {
			t->damaged++;
			continue;
		}
		/* Rows come by dataset: look each one up once. */
		number = store_get_u32(k.data);
		if (any && number == seen)
			continue;
		if (dataset_by_number(c->v, c->txn, number, &ds) != 0) {
			t->damaged++;
			continue;
		}
		seen = number;
		any = true;
	}
	if (rc != VAULT_ERR_NOT_FOUND)
		t->damaged++;
	store_cursor_close(cur);
}

/* The stored counts against those recomputed from the values. */
static void
walk_counts(struct check *c)
{
	struct tally *t = &c->t[K_COUNTS];
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	size_t i = 0, n = 0;
	int rc;

	if (c->n_counts > 0)
		qsort(c->counts, c->n_counts, sizeof(*c->counts), count_cmp);
	for (size_t j = 0; j < c->n_counts; j++) {	/* merge equal keys */
		if (n > 0 && count_cmp(&c->counts[n - 1], &c->counts[j]) == 0)
			c->counts[n - 1].n++;
		else
			c->counts[n++] = c->counts[j];
	}
	if (store_cursor_open(c->txn, STORE_COUNTS, &cur) != 0) {
		t->damaged++;
		return;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const char *nul = memchr(k.data, '\0', k.len);

		t->checked++;
		/* Counts of attributes a schema change dropped: the purge's. */
		if (nul != NULL && schema_find_attr(c->v->schema, k.data,
		    (size_t)(nul - (const char *)k.data)) < 0)
			continue;
		for (; i < n && key_cmp(c->counts[i].key, c->counts[i].len,
		    k.data, k.len) < 0; i++)
			t->damaged++;	/* a value with no count */
		if (i < n && key_cmp(c->counts[i].key, c->counts[i].len,
		    k.data, k.len) == 0) {
			if (val.len != 8 ||
			    store_get_u64(val.data) != c->counts[i].n)
				t->damaged++;
			i++;
		} else {
			t->damaged++;	/* a count of no value */
		}
	}
	t->damaged += n - i;
	if (rc != VAULT_ERR_NOT_FOUND)
		t->damaged++;
	store_cursor_close(cur);
}

/* Each entry of the audit index must name an entry of the chain. */
static void
walk_audit_index(struct check *c)
{
	struct tally *t = &c->t[K_AUDIT_INDEX];
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc;

	if (store_cursor_open(c->txn, STORE_AUDIT_REF, &cur) != 0) {
		t->damaged++;
		return;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		t->checked++;
		if (k.len != CRYPTO_REF_BYTES || val.len != 8 ||
		    !exists(c, STORE_AUDIT, val.data, 8))
			t->damaged++;
	}
	if (rc != VAULT_ERR_NOT_FOUND)
		t->damaged++;
	store_cursor_close(cur);
}

static void
walk_plain(struct check *c, enum store_space sp, int kind)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc;

	if (store_cursor_open(c->txn, sp, &cur) != 0) {
		c->t[kind].damaged++;
		return;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT))
		c->t[kind].checked++;
	if (rc != VAULT_ERR_NOT_FOUND)
		c->t[kind].damaged++;
	store_cursor_close(cur);
}

static void
check_audit_chain(struct check *c)
{
	struct audit_check ac;

	/* Its own snapshot; record false: nothing is written. */
	if (audit_check(&c->v->audit, true, false, &ac) != 0) {
		c->t[K_AUDIT].damaged++;
		return;
	}
	c->t[K_AUDIT].checked = ac.entries;
	if (!audit_check_ok(&ac))
		c->t[K_AUDIT].damaged++;
}

static uint64_t
report(const struct check *c)
{
	uint64_t total = 0;

	for (int i = 0; i < K_KINDS; i++) {
		const struct tally *t = &c->t[i];

		printf("%-22s %10llu checked, %llu damaged, %llu orphaned\n",
		    t->what, (unsigned long long)t->checked,
		    (unsigned long long)t->damaged,
		    (unsigned long long)t->orphaned);
		total += t->damaged + t->orphaned;
	}
	printf("%-22s %10llu awaiting collection (of deleted consumers)\n",
	    "attribute records", (unsigned long long)c->pending);
	printf("damaged %llu\n", (unsigned long long)total);
	return total;
}

int
check_store(const struct config *cfg)
{
	static const char *const what[K_KINDS] = { "consumers",
	    "attribute records", "manifests", "consents", "lineage",
	    "lineage rows", "counts", "collection queue", "audit entries",
	    "audit index",
	    "meta" };
	struct check c = { 0 };
	int r = 2;

	for (int i = 0; i < K_KINDS; i++)
		c.t[i].what = what[i];
	/* Alone on the store: no vaultd serves it, replica or not. */
	if (vault_open_locked(&c.v, cfg, VAULT_OPEN_EXISTING, true) != 0) {
		log_error("cannot open the vault: a vaultd is running on it (stop "
		    "the daemon first), or the store or its keys are damaged or "
		    "missing");
		goto out;
	}
	if ((c.values = malloc(sizeof(*c.values))) == NULL ||
	    (c.mem = crypto_secret_alloc(RECORD_SCRATCH_BYTES)) == NULL ||
	    store_read_begin(c.v->store, &c.txn) != 0)
		goto out;
	walk_consumers(&c);
	/* A values record (key ref) or a record of the older layout (ref | name). */
	walk_by_ref(&c, STORE_ATTRS, K_ATTRS, &(struct shape){
	    CRYPTO_REF_BYTES, CRYPTO_REF_BYTES + SCHEMA_NAME_MAX - 1,
	    RECORD_VALUES_FIRST + CRYPTO_OVERHEAD, RECORD_VALUES_MAX,
	    RECORD_FORMAT });
	walk_by_ref(&c, STORE_MANIFESTS, K_MANIFESTS, &(struct shape){
	    CRYPTO_REF_BYTES, CRYPTO_REF_BYTES, 3 + RECORD_MANIFEST_TAG,
	    RECORD_MANIFEST_MAX, RECORD_MANIFEST_FORMAT });
	/* consent.h: fmt(1) | granted(1) | updated ms(8) | source */
	walk_by_ref(&c, STORE_CONSENTS, K_CONSENTS, &(struct shape){
	    CRYPTO_REF_BYTES + 1, CRYPTO_REF_BYTES + SCHEMA_NAME_MAX, 10,
	    10 + CONSENT_SOURCE_MAX, 1 });
	walk_by_ref(&c, STORE_LINEAGE, K_LINEAGE, &(struct shape){
	    CRYPTO_REF_BYTES, CRYPTO_REF_BYTES, 4, 4, -1 });
	walk_lineage_rows(&c);
	/* When deleted (8), and 1 when lineage is left to collect (consumer.c). */
	walk_by_ref(&c, STORE_GC, K_GC, &(struct shape){
	    CRYPTO_REF_BYTES, CRYPTO_REF_BYTES, 8, 9, -1 });
	walk_counts(&c);
	walk_audit_index(&c);
	walk_plain(&c, STORE_META, K_META);
	store_read_end(c.txn);
	c.txn = NULL;
	check_audit_chain(&c);
	r = report(&c) == 0 ? 0 : 1;
out:
	store_read_end(c.txn);
	crypto_secret_free(c.mem);
	crypto_secret_free(c.plain);
	free(c.values);
	free(c.counts);
	vault_close(c.v);
	return r;
}
