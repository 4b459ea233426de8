#include <string.h>

#include <sodium.h>

#include "consumer.h"
#include "log.h"

#define REC_FORMAT 1
#define CONSUMER_HDR (1 + 4 + 4 + 8)
#define WRAPPED_DEK_BYTES (CRYPTO_KEY_BYTES + CRYPTO_OVERHEAD)
#define CONSUMER_REC_BYTES (CONSUMER_HDR + WRAPPED_DEK_BYTES)
#define ATTR_HDR (1 + 8 + 8)
#define ATTR_KEY_MAX (CRYPTO_REF_BYTES + SCHEMA_NAME_MAX)

struct consumer_rec {
	uint32_t master_version;
	uint32_t dek_generation;
	uint64_t created_ms;
	const uint8_t *wrapped;		/* into the map: valid with its txn */
};

static int
parse_consumer(const MDB_val *v, struct consumer_rec *rec)
{
	const uint8_t *p = v->mv_data;

	if (v->mv_size != CONSUMER_REC_BYTES || p[0] != REC_FORMAT) {
		log_error("a consumer record has an unknown format");
		return VAULT_ERR_STATE;
	}
	rec->master_version = store_get_u32(p + 1);
	rec->dek_generation = store_get_u32(p + 5);
	rec->created_ms = store_get_u64(p + 9);
	rec->wrapped = p + CONSUMER_HDR;
	return 0;
}

static size_t
dek_ad(uint8_t *ad, const uint8_t ref[CRYPTO_REF_BYTES], uint32_t version)
{
	memcpy(ad, ref, CRYPTO_REF_BYTES);
	memcpy(ad + CRYPTO_REF_BYTES, "dek", 3);
	store_put_u32(ad + CRYPTO_REF_BYTES + 3, version);
	return CRYPTO_REF_BYTES + 3 + 4;
}

static size_t
attr_ad(uint8_t *ad, const uint8_t ref[CRYPTO_REF_BYTES], const char *name,
    uint32_t generation)
{
	size_t n = strlen(name);

	memcpy(ad, ref, CRYPTO_REF_BYTES);
	memcpy(ad + CRYPTO_REF_BYTES, name, n);
	store_put_u32(ad + CRYPTO_REF_BYTES + n, generation);
	return CRYPTO_REF_BYTES + n + 4;
}

static size_t
attr_key(uint8_t *key, const uint8_t ref[CRYPTO_REF_BYTES], const char *name)
{
	size_t n = strlen(name);

	memcpy(key, ref, CRYPTO_REF_BYTES);
	memcpy(key + CRYPTO_REF_BYTES, name, n);
	return CRYPTO_REF_BYTES + n;
}

static int
unwrap_dek(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    const struct consumer_rec *rec, uint8_t *dek)
{
	uint8_t ad[CRYPTO_REF_BYTES + 7];
	const uint8_t *master = keyring_master(v->kr, rec->master_version);
	size_t n;

	if (master == NULL) {
		log_error("a consumer's DEK is wrapped under master key version "
		    "%u, which is not loaded", rec->master_version);
		return VAULT_ERR_KEY;
	}
	if (crypto_open(master, ad, dek_ad(ad, ref, rec->master_version),
	    rec->wrapped, WRAPPED_DEK_BYTES, dek, CRYPTO_KEY_BYTES, &n) != 0 ||
	    n != CRYPTO_KEY_BYTES) {
		log_error("a wrapped DEK failed to open: the store is corrupt "
		    "or was tampered with");
		return VAULT_ERR_CRYPTO;
	}
	return 0;
}

/* A new consumer: random DEK, wrapped under the active master key. */
static int
create_consumer(struct vault *v, MDB_txn *txn, const uint8_t *ref,
    uint8_t *dek, struct consumer_rec *rec)
{
	uint8_t buf[CONSUMER_REC_BYTES], ad[CRYPTO_REF_BYTES + 7];
	uint32_t ver = keyring_active_version(v->kr);
	MDB_val k = { CRYPTO_REF_BYTES, (void *)ref }, val = { sizeof(buf), buf };
	int r, rc;

	randombytes_buf(dek, CRYPTO_KEY_BYTES);
	buf[0] = REC_FORMAT;
	store_put_u32(buf + 1, ver);
	store_put_u32(buf + 5, 1);
	store_put_u64(buf + 9, store_now_ms());
	if ((r = crypto_seal(keyring_master(v->kr, ver), ver, ad,
	    dek_ad(ad, ref, ver), dek, CRYPTO_KEY_BYTES, buf + CONSUMER_HDR,
	    WRAPPED_DEK_BYTES)) != 0)
		return r;
	if ((rc = mdb_put(txn, v->store->consumers, &k, &val, 0)) != 0)
		return store_err(v->store, rc, "put consumer");
	rec->master_version = ver;
	rec->dek_generation = 1;
	return 0;
}

struct put_job {
	struct vault *v;
	const uint8_t *ref;
	const struct attr_in *attrs;
	size_t n;
	bool created;
	uint8_t *dek;		/* locked scratch */
};

static int
put_apply(MDB_txn *txn, void *arg)
{
	struct put_job *job = arg;
	struct vault *v = job->v;
	MDB_val k = { CRYPTO_REF_BYTES, (void *)job->ref }, val;
	struct consumer_rec rec;
	uint8_t key[ATTR_KEY_MAX], ad[CRYPTO_REF_BYTES + SCHEMA_NAME_MAX + 4];
	uint8_t buf[ATTR_HDR + SCHEMA_VALUE_MAX + CRYPTO_OVERHEAD];
	uint64_t now = store_now_ms();
	int rc, r;

	job->created = false;
	rc = mdb_get(txn, v->store->consumers, &k, &val);
	if (rc == MDB_NOTFOUND) {
		if ((r = create_consumer(v, txn, job->ref, job->dek, &rec)) != 0)
			return r;
		job->created = true;
	} else if (rc != 0) {
		return store_err(v->store, rc, "get consumer");
	} else if ((r = parse_consumer(&val, &rec)) != 0 ||
	    (r = unwrap_dek(v, job->ref, &rec, job->dek)) != 0) {
		return r;
	}
	for (size_t i = 0; i < job->n; i++) {
		const struct attr_in *a = &job->attrs[i];
		const char *name = v->schema->attrs[a->attr].name;
		size_t sealed = a->len + CRYPTO_OVERHEAD;

		buf[0] = REC_FORMAT;
		store_put_u64(buf + 1, now);
		store_put_u64(buf + 9, 0);
		if ((r = crypto_seal(job->dek, rec.dek_generation, ad,
		    attr_ad(ad, job->ref, name, rec.dek_generation),
		    (const uint8_t *)a->value, a->len, buf + ATTR_HDR,
		    sizeof(buf) - ATTR_HDR)) != 0)
			return r;
		k = (MDB_val){ attr_key(key, job->ref, name), key };
		val = (MDB_val){ ATTR_HDR + sealed, buf };
		if ((rc = mdb_put(txn, v->store->attrs, &k, &val, 0)) != 0)
			return store_err(v->store, rc, "put attribute");
	}
	return 0;
}

int
consumer_put(struct vault *v, const char *id, size_t id_len,
    const struct attr_in *attrs, size_t n, bool *created,
    uint8_t ref[CRYPTO_REF_BYTES])
{
	struct put_job job = { .v = v, .ref = ref, .attrs = attrs, .n = n };
	int r;

	crypto_consumer_ref(keyring_index_key(v->kr), id, id_len, ref);
	if ((job.dek = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	r = writer_submit(v->wr, put_apply, &job);
	crypto_secret_free(job.dek);
	*created = r == 0 && job.created;
	return r;
}

/* Gathers the attribute records to open; values stay valid with txn. */
static int
collect_attrs(struct vault *v, MDB_txn *txn, const uint8_t *ref,
    const int *attrs, size_t n_attrs, int *idx, MDB_val *vals, size_t *count)
{
	uint8_t key[ATTR_KEY_MAX];
	MDB_val k;
	int rc;

	*count = 0;
	if (n_attrs == 0) {
		for (size_t i = 0; i < v->schema->n_attrs; i++) {
			k = (MDB_val){ attr_key(key, ref, v->schema->attrs[i].name), key };
			rc = mdb_get(txn, v->store->attrs, &k, &vals[*count]);
			if (rc == MDB_NOTFOUND)
				continue;
			if (rc != 0)
				return store_err(v->store, rc, "get attribute");
			idx[(*count)++] = (int)i;
		}
		return 0;
	}
	for (size_t i = 0; i < n_attrs; i++) {
		k = (MDB_val){ attr_key(key, ref, v->schema->attrs[attrs[i]].name), key };
		rc = mdb_get(txn, v->store->attrs, &k, &vals[*count]);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return store_err(v->store, rc, "get attribute");
		idx[(*count)++] = attrs[i];
	}
	return 0;
}

static int
open_attrs(struct vault *v, const uint8_t *dek, const struct consumer_rec *rec,
    const int *idx, const MDB_val *vals, size_t count,
    struct consumer_values *out)
{
	uint8_t ad[CRYPTO_REF_BYTES + SCHEMA_NAME_MAX + 4];
	size_t total = 1, off = 0;
	int r;

	for (size_t i = 0; i < count; i++) {
		if (vals[i].mv_size < ATTR_HDR + CRYPTO_OVERHEAD ||
		    ((const uint8_t *)vals[i].mv_data)[0] != REC_FORMAT) {
			log_error("an attribute record has an unknown format");
			return VAULT_ERR_STATE;
		}
		total += vals[i].mv_size - ATTR_HDR - CRYPTO_OVERHEAD + 1;
	}
	if ((out->buf = crypto_secret_alloc(total)) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < count; i++) {
		const uint8_t *p = vals[i].mv_data;
		const char *name = v->schema->attrs[idx[i]].name;
		size_t len;

		if ((r = crypto_open(dek, ad, attr_ad(ad, out->ref, name,
		    rec->dek_generation), p + ATTR_HDR, vals[i].mv_size - ATTR_HDR,
		    out->buf + off, total - off, &len)) != 0) {
			log_error("an attribute value failed to open: the store is "
			    "corrupt or was tampered with");
			return r;
		}
		out->buf[off + len] = '\0';
		out->v[i] = (struct attr_out){ idx[i], (const char *)out->buf + off,
		    len, store_get_u64(p + 1) };
		off += len + 1;
	}
	out->n = count;
	return 0;
}

int
consumer_get(struct vault *v, const char *id, size_t id_len, const int *attrs,
    size_t n_attrs, struct consumer_values *out)
{
	MDB_val vals[SCHEMA_MAX_ATTRS];
	int idx[SCHEMA_MAX_ATTRS];
	MDB_txn *txn = NULL;
	MDB_val k, val;
	struct consumer_rec rec;
	uint8_t *dek = NULL;
	size_t count;
	int rc, r;

	memset(out, 0, sizeof(*out));
	if (n_attrs > SCHEMA_MAX_ATTRS)
		return VAULT_ERR_INVALID;
	crypto_consumer_ref(keyring_index_key(v->kr), id, id_len, out->ref);
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	k = (MDB_val){ CRYPTO_REF_BYTES, out->ref };
	if ((rc = mdb_get(txn, v->store->consumers, &k, &val)) != 0) {
		r = rc == MDB_NOTFOUND ? VAULT_ERR_NOT_FOUND :
		    store_err(v->store, rc, "get consumer");
		goto out;
	}
	if ((dek = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((r = parse_consumer(&val, &rec)) != 0 ||
	    (r = unwrap_dek(v, out->ref, &rec, dek)) != 0 ||
	    (r = collect_attrs(v, txn, out->ref, attrs, n_attrs, idx, vals,
	    &count)) != 0)
		goto out;
	r = open_attrs(v, dek, &rec, idx, vals, count, out);
out:
	mdb_txn_abort(txn);
	crypto_secret_free(dek);
	if (r != 0)
		consumer_values_clear(out);
	return r;
}

void
consumer_values_clear(struct consumer_values *cv)
{
	crypto_secret_free(cv->buf);
	cv->buf = NULL;
	cv->n = 0;
}

struct delete_job {
	struct vault *v;
	const uint8_t *ref;
	struct deletion *out;
};

static int
delete_apply(MDB_txn *txn, void *arg)
{
	struct delete_job *job = arg;
	struct store *st = job->v->store;
	MDB_val k = { CRYPTO_REF_BYTES, (void *)job->ref }, val;
	MDB_cursor *cur = NULL;
	struct consumer_rec rec;
	int rc, r;

	job->out->found = false;
	job->out->epoch = 0;
	rc = mdb_get(txn, st->consumers, &k, &val);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return store_err(st, rc, "get consumer");
	if ((r = parse_consumer(&val, &rec)) != 0)
		return r;
	job->out->epoch = rec.master_version;
	if ((rc = mdb_del(txn, st->consumers, &k, NULL)) != 0)
		return store_err(st, rc, "delete consumer");
	/* The DEK is gone, so the values are unreadable; drop them too. */
	if ((rc = mdb_cursor_open(txn, st->attrs, &cur)) != 0)
		return store_err(st, rc, "open cursor");
	for (rc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		if (k.mv_size < CRYPTO_REF_BYTES ||
		    memcmp(k.mv_data, job->ref, CRYPTO_REF_BYTES) != 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store_err(st, rc, "delete attributes");
	job->out->found = true;
	return 0;
}

int
consumer_delete(struct vault *v, const char *id, size_t id_len,
    struct deletion *out)
{
	struct delete_job job = { .v = v, .ref = out->ref, .out = out };
	int r;

	crypto_consumer_ref(keyring_index_key(v->kr), id, id_len, out->ref);
	r = writer_submit(v->wr, delete_apply, &job);
	out->deleted_at_ms = store_now_ms();
	return r;
}
