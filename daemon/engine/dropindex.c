/*
 * Building the DROP index for the consumers stored before (drop.h): the
 * janitor's part, which opens each consumer's values.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/consumer.h"
#include "engine/drop.h"
#include "engine/dropindex.h"
#include "engine/record.h"
#include "engine/vault.h"
#include "store/meta.h"
#include "util/log.h"

/* The standardization's version: a change to the rules rebuilds the index. */
#define STD_VERSION "drop-std 1 (DROP API 1.2.0)"
#define FINGERPRINT_BYTES 16
#define BUILD_BATCH 500
/* meta "drop_index": fingerprint | built(1) | the next ref to index. */
#define STATE_BYTES (FINGERPRINT_BYTES + 1 + CRYPTO_REF_BYTES)

/* The schema's drop identifiers and the rules' version, hashed. */
static void
fingerprint(const struct vault *v, uint8_t out[FINGERPRINT_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, FINGERPRINT_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)STD_VERSION,
	    sizeof(STD_VERSION));
	for (size_t a = 0; a < v->schema->n_attrs; a++) {
		const struct attr_def *d = &v->schema->attrs[a];
		uint8_t f = (uint8_t)d->drop;

		if (d->drop == DROP_F_NONE)
			continue;
		crypto_generichash_update(&st, (const uint8_t *)d->name,
		    strlen(d->name) + 1);
		crypto_generichash_update(&st, &f, 1);
	}
	crypto_generichash_final(&st, out, FINGERPRINT_BYTES);
}

struct build_job {
	struct vault *v;
	bool built;
	size_t indexed;			/* in this transaction */
	struct value_list l;
};

/* The index entries of the consumer at ref (crec read in txn). */
static int
index_one(struct build_job *job, struct store_txn *txn, const uint8_t *ref,
    const struct store_val *crec, uint8_t *dek)
{
	struct values_taken t = { 0 };
	struct drop_forms forms;
	struct consumer_rec rec;
	int r;

	if ((r = record_parse_consumer(crec, &rec)) != 0 ||
	    (r = record_unwrap_dek(job->v->kr, txn, ref, &rec, dek)) != 0 ||
	    (r = consumer_values_take(job->v, txn, ref, &rec, dek, &job->l,
	    &t)) != 0)
		goto out;
	drop_forms_of(job->v, &job->l, &forms);
	r = drop_index_update_txn(txn, ref, NULL, &forms);
out:
	consumer_values_release(&t);
	/* Damage does not stop the build: --check reports the consumer. */
	if (r == VAULT_ERR_CRYPTO || r == VAULT_ERR_KEY) {
		log_error("a consumer's values failed their check: it is left "
		    "out of the DROP index");
		r = 0;
	}
	return r;
}

static int
build_apply(struct store_txn *txn, void *arg)
{
	struct build_job *job = arg;
	uint8_t state[STATE_BYTES], fp[FINGERPRINT_BYTES], ref[CRYPTO_REF_BYTES];
	uint8_t copy[RECORD_CONSUMER_BYTES], *dek = NULL, prefix = DROP_INDEX_KIND;
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	size_t seen = 0;
	int rc, r = 0;

	fingerprint(job->v, fp);
	rc = meta_get(txn, META_DROP_INDEX, 0, &val);
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		return rc;
	if (rc == 0 && val.len == STATE_BYTES &&
	    memcmp(val.data, fp, FINGERPRINT_BYTES) == 0) {
		memcpy(state, val.data, STATE_BYTES);
	} else {
		/* New, or of other identifiers: built again from nothing. */
		if ((r = store_delete_prefix(txn, STORE_DROP, &prefix, 1)) != 0)
			return r;
		memset(state, 0, sizeof(state));
		memcpy(state, fp, FINGERPRINT_BYTES);
	}
	job->indexed = 0;
	if ((job->built = state[FINGERPRINT_BYTES] != 0))
		return 0;
	if ((dek = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	if ((rc = store_cursor_open(txn, STORE_CONSUMERS, &cur)) != 0) {
		r = rc;
		goto out;
	}
	k = (struct store_val){ CRYPTO_REF_BYTES, state + FINGERPRINT_BYTES + 1 };
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	    rc == 0 && seen < BUILD_BATCH;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT), seen++) {
		struct store_val c;

		if (k.len != CRYPTO_REF_BYTES || val.len != sizeof(copy))
			continue;
		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		memcpy(copy, val.data, sizeof(copy));
		c = (struct store_val){ sizeof(copy), copy };
		if ((r = index_one(job, txn, ref, &c, dek)) != 0)
			break;
		job->indexed++;
		/* Written past the cursor: it stands on the record again. */
		k = (struct store_val){ CRYPTO_REF_BYTES, ref };
		if ((rc = store_cursor_get(cur, &k, &val, STORE_SEEK)) != 0)
			break;
	}
	if (r == 0 && rc == 0) {
		memcpy(state + FINGERPRINT_BYTES + 1, k.data, CRYPTO_REF_BYTES);
	} else if (r == 0 && rc == VAULT_ERR_NOT_FOUND) {
		state[FINGERPRINT_BYTES] = 1;
		job->built = true;
	} else if (r == 0) {
		r = rc;
	}
	if (r == 0)
		r = meta_put(txn, META_DROP_INDEX, 0, state, sizeof(state));
out:
	store_cursor_close(cur);
	crypto_secret_free(dek);
	return r;
}

int
drop_index_is_built(struct vault *v, bool *built)
{
	uint8_t fp[FINGERPRINT_BYTES];
	struct store_txn *txn;
	struct store_val val;
	int rc, r;

	*built = false;
	fingerprint(v, fp);
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	rc = meta_get(txn, META_DROP_INDEX, 0, &val);
	if (rc == 0)
		*built = val.len == STATE_BYTES &&
		    memcmp(val.data, fp, FINGERPRINT_BYTES) == 0 &&
		    ((const uint8_t *)val.data)[FINGERPRINT_BYTES] != 0;
	store_read_end(txn);
	return rc == 0 || rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}

int
drop_index_build(struct vault *v, bool *built)
{
	struct build_job *job;
	int r = 0;

	*built = true;
	if (!drop_enabled(v)) {
		atomic_store(&v->drop_index_state, 0);
		return 0;
	}
	if ((r = drop_index_is_built(v, built)) != 0 || *built) {
		if (r == 0)
			atomic_store(&v->drop_index_state, 2);
		return r;
	}
	atomic_store(&v->drop_index_state, 1);
	if ((job = calloc(1, sizeof(*job))) == NULL)
		return VAULT_ERR_NOMEM;
	job->v = v;
	do {
		r = writer_submit(v->wr, build_apply, job);
		if (r == 0)
			atomic_fetch_add(&v->drop_indexed, job->indexed);
	} while (r == 0 && !job->built);
	*built = job->built;
	if (job->built)
		atomic_store(&v->drop_index_state, 2);
	free(job);
	return r;
}
