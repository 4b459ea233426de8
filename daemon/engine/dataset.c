#include <stdio.h>
#include <string.h>

#include "engine/dataset.h"
#include "util/log.h"

#define NEXT_KEY "next_dataset"

const char *
dataset_check_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0)
		return "is required";
	if (n > DATASET_ID_MAX)
		return "longer than 64 characters";
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
		    (id[i] >= '0' && id[i] <= '9') || id[i] == '.' || id[i] == '_' ||
		    id[i] == '-'))
			return "may hold only letters, digits, '.', '_' and '-'";
	return NULL;
}

static size_t
id_key(uint8_t *buf, const char *id)
{
	size_t n = strlen(id);

	memcpy(buf, "id:", 3);
	memcpy(buf + 3, id, n);
	return n + 3;
}

static int
purpose_of(struct vault *v, const char *name, size_t len)
{
	return schema_find_purpose(v->schema, name, len);
}

int
dataset_by_id(struct vault *v, MDB_txn *txn, const char *id,
    struct dataset_info *out)
{
	uint8_t key[3 + DATASET_ID_MAX];
	MDB_val k = { id_key(key, id), key }, val;
	int rc = mdb_get(txn, v->store->datasets, &k, &val);

	if (rc == MDB_NOTFOUND)
		return VAULT_ERR_NOT_FOUND;
	if (rc != 0)
		return store_err(v->store, rc, "get dataset");
	if (val.mv_size < 4) {
		log_error("a dataset record is corrupt");
		return VAULT_ERR_STATE;
	}
	out->number = store_get_u32(val.mv_data);
	out->purpose = purpose_of(v, (const char *)val.mv_data + 4, val.mv_size - 4);
	snprintf(out->id, sizeof(out->id), "%s", id);
	return 0;
}

int
dataset_by_number(struct vault *v, MDB_txn *txn, uint32_t number,
    struct dataset_info *out)
{
	uint8_t key[8];
	MDB_val k = { sizeof(key), key }, val;
	const char *p, *nul;
	int rc;

	memcpy(key, "num:", 4);
	store_put_u32(key + 4, number);
	if ((rc = mdb_get(txn, v->store->datasets, &k, &val)) == MDB_NOTFOUND)
		return VAULT_ERR_NOT_FOUND;
	if (rc != 0)
		return store_err(v->store, rc, "get dataset");
	p = val.mv_data;
	nul = memchr(p, '\0', val.mv_size);
	if (nul == NULL || (size_t)(p + val.mv_size - nul - 1) > DATASET_ID_MAX) {
		log_error("a dataset record is corrupt");
		return VAULT_ERR_STATE;
	}
	out->number = number;
	out->purpose = purpose_of(v, p, (size_t)(nul - p));
	memcpy(out->id, nul + 1, (size_t)(p + val.mv_size - nul - 1));
	out->id[p + val.mv_size - nul - 1] = '\0';
	return 0;
}

struct create_job {
	struct vault *v;
	const char *id;
	int purpose;
	struct dataset_info info;
};

static int
create_apply(MDB_txn *txn, void *arg)
{
	struct create_job *job = arg;
	struct store *st = job->v->store;
	const char *pname = job->v->schema->purposes[job->purpose].name;
	uint8_t key[3 + DATASET_ID_MAX], num[4], rkey[8];
	uint8_t rec[4 + SCHEMA_NAME_MAX + 1 + DATASET_ID_MAX];
	MDB_val mk = { sizeof(NEXT_KEY) - 1, NEXT_KEY }, k, v;
	size_t plen = strlen(pname), ilen = strlen(job->id);
	int rc, r;

	if ((r = dataset_by_id(job->v, txn, job->id, &job->info)) != VAULT_ERR_NOT_FOUND)
		return r;
	rc = mdb_get(txn, st->meta, &mk, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store_err(st, rc, "get dataset counter");
	job->info.number = rc == 0 && v.mv_size == 4 ? store_get_u32(v.mv_data) : 1;
	job->info.purpose = job->purpose;
	store_put_u32(num, job->info.number + 1);
	v = (MDB_val){ 4, num };
	if ((rc = mdb_put(txn, st->meta, &mk, &v, 0)) != 0)
		return store_err(st, rc, "put dataset counter");
	store_put_u32(rec, job->info.number);
	memcpy(rec + 4, pname, plen);
	k = (MDB_val){ id_key(key, job->id), key };
	v = (MDB_val){ 4 + plen, rec };
	if ((rc = mdb_put(txn, st->datasets, &k, &v, 0)) != 0)
		return store_err(st, rc, "put dataset");
	memcpy(rkey, "num:", 4);
	store_put_u32(rkey + 4, job->info.number);
	memcpy(rec, pname, plen);
	rec[plen] = '\0';
	memcpy(rec + plen + 1, job->id, ilen);
	k = (MDB_val){ sizeof(rkey), rkey };
	v = (MDB_val){ plen + 1 + ilen, rec };
	if ((rc = mdb_put(txn, st->datasets, &k, &v, 0)) != 0)
		return store_err(st, rc, "put dataset");
	return 0;
}

int
dataset_get_or_create(struct vault *v, const char *id, int purpose,
    uint32_t *number, int *bound)
{
	struct create_job job = { .v = v, .id = id, .purpose = purpose };
	MDB_txn *txn;
	int r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	r = dataset_by_id(v, txn, id, &job.info);
	mdb_txn_abort(txn);
	if (r == VAULT_ERR_NOT_FOUND)
		r = writer_submit(v->wr, create_apply, &job);
	if (r != 0)
		return r;
	*number = job.info.number;
	*bound = job.info.purpose;
	return job.info.purpose == purpose ? 0 : VAULT_ERR_STATE;
}
