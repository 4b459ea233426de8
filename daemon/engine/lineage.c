#include <stdlib.h>
#include <string.h>

#include "engine/lineage.h"
#include "crypto/keyring.h"
#include "engine/tokenize.h"

void
lineage_key(struct vault *v, uint8_t out[LINEAGE_KEY_BYTES], uint32_t dataset,
    uint64_t order, const uint8_t ref[CRYPTO_REF_BYTES])
{
	store_put_u32(out, dataset);
	store_put_u64(out + 4, order);
	store_put_u64(out + 12, tokenizer_lineage_tag(v->tok, dataset, ref));
}

struct walk {
	struct vault *v;
	const uint8_t *ref;
	struct lineage_doomed *doomed;
	uint32_t *legacy;		/* the old layout's numbers, ascending */
	size_t n_legacy, next_legacy;
	int (*fn)(const struct dataset_info *ds, void *arg);
	void *arg;
	struct store_txn *txn;
};

/* The old layout's dataset numbers of ref (values of another size skipped). */
static int
read_legacy(struct walk *w)
{
	struct store_cursor *cur = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, w->ref }, val;
	size_t cap = 0;
	int rc, r = 0;

	if ((rc = store_cursor_open(w->txn, STORE_LINEAGE, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SET); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT_DUP)) {
		if (val.len != 4)
			continue;
		if (w->n_legacy == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			uint32_t *p = realloc(w->legacy, ncap * sizeof(*p));

			if (p == NULL) {
				r = VAULT_ERR_NOMEM;
				break;
			}
			w->legacy = p;
			cap = ncap;
		}
		/* Dup values sort bytewise: big-endian numbers ascend. */
		w->legacy[w->n_legacy++] = store_get_u32(val.data);
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	return r;
}

static bool
in_legacy(struct walk *w, uint32_t number)
{
	while (w->next_legacy < w->n_legacy &&
	    w->legacy[w->next_legacy] < number)
		w->next_legacy++;
	return w->next_legacy < w->n_legacy &&
	    w->legacy[w->next_legacy] == number;
}

static int
doom(struct lineage_doomed *d, const uint8_t key[LINEAGE_KEY_BYTES])
{
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 64;
		void *p = realloc(d->keys, ncap * LINEAGE_KEY_BYTES);

		if (p == NULL)
			return VAULT_ERR_NOMEM;
		d->keys = p;
		d->cap = ncap;
	}
	memcpy(d->keys[d->n++], key, LINEAGE_KEY_BYTES);
	return 0;
}

static int
visit(const struct dataset_info *ds, void *arg)
{
	struct walk *w = arg;
	uint8_t key[LINEAGE_KEY_BYTES];
	struct store_val val;
	uint64_t order;
	bool found;
	int rc, r;

	if ((r = tokenizer_order_named(w->v->tok, keyring_token_root(w->v->kr),
	    ds->purpose_name, strlen(ds->purpose_name), w->ref, &order)) != 0)
		return r;
	lineage_key(w->v, key, ds->number, order, w->ref);
	rc = store_get(w->txn, STORE_LINEAGE_ROWS, key, sizeof(key), &val);
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		return rc;
	found = rc == 0;
	if (found && w->doomed != NULL && (r = doom(w->doomed, key)) != 0)
		return r;
	if (!found && !in_legacy(w, ds->number))
		return 0;
	return w->fn(ds, w->arg);
}

int
lineage_each(struct vault *v, struct store_txn *txn,
    const uint8_t ref[CRYPTO_REF_BYTES], struct lineage_doomed *doomed,
    int (*fn)(const struct dataset_info *ds, void *arg), void *arg)
{
	struct walk w = { .v = v, .ref = ref, .doomed = doomed, .fn = fn,
	    .arg = arg, .txn = txn };
	int rc, r;

	if ((r = read_legacy(&w)) == 0)
		r = dataset_each(v, txn, visit, &w);
	if (r == 0 && doomed != NULL) {
		rc = store_del(txn, STORE_LINEAGE, ref, CRYPTO_REF_BYTES, NULL, 0);
		if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
			r = rc;
	}
	free(w.legacy);
	return r;
}

static int
cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, LINEAGE_KEY_BYTES);
}

int
lineage_forget(struct store_txn *txn, struct lineage_doomed *d)
{
	int rc;

	if (d->n == 0)
		return 0;
	qsort(d->keys, d->n, LINEAGE_KEY_BYTES, cmp_key);
	for (size_t i = 0; i < d->n; i++) {
		rc = store_del(txn, STORE_LINEAGE_ROWS, d->keys[i],
		    LINEAGE_KEY_BYTES, NULL, 0);
		if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
			return rc;
	}
	d->n = 0;
	return 0;
}

void
lineage_doomed_free(struct lineage_doomed *d)
{
	free(d->keys);
	memset(d, 0, sizeof(*d));
}

int
lineage_count(struct store_txn *txn, uint32_t dataset, uint64_t *n)
{
	struct store_cursor *cur = NULL;
	uint8_t prefix[4];
	struct store_val k = { sizeof(prefix), prefix }, val;
	int rc;

	*n = 0;
	store_put_u32(prefix, dataset);
	if ((rc = store_cursor_open(txn, STORE_LINEAGE_ROWS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len < sizeof(prefix) ||
		    memcmp(k.data, prefix, sizeof(prefix)) != 0)
			break;
		(*n)++;
	}
	store_cursor_close(cur);
	return rc == 0 || rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}
