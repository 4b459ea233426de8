#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dataset.h"
#include "store/meta.h"
#include "util/log.h"

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

	memcpy(buf, DATASET_ID_PREFIX, DATASET_ID_PREFIX_LEN);
	memcpy(buf + DATASET_ID_PREFIX_LEN, id, n);
	return DATASET_ID_PREFIX_LEN + n;
}

static void
num_key(uint8_t buf[DATASET_NUM_KEY_BYTES], uint32_t number)
{
	memcpy(buf, DATASET_NUM_PREFIX, DATASET_NUM_PREFIX_LEN);
	store_put_u32(buf + DATASET_NUM_PREFIX_LEN, number);
}

static int
purpose_of(struct vault *v, const char *name, size_t len)
{
	return schema_find_purpose(v->schema, name, len);
}

/* Within txn: the dataset with id. VAULT_ERR_NOT_FOUND if none. */
static int
dataset_by_id(struct vault *v, struct store_txn *txn, const char *id,
    struct dataset_info *out)
{
	uint8_t key[DATASET_ID_PREFIX_LEN + DATASET_ID_MAX];
	struct store_val k = { id_key(key, id), key }, val;
	int rc = store_get(txn, STORE_DATASETS, k.data, k.len, &val);

	if (rc == VAULT_ERR_NOT_FOUND)
		return VAULT_ERR_NOT_FOUND;
	if (rc != 0)
		return rc;
	if (val.len < DATASET_PURPOSE) {
		log_error("a dataset record is corrupt");
		return VAULT_ERR_STATE;
	}
	out->number = store_get_u32((const uint8_t *)val.data + DATASET_NUMBER);
	out->purpose = purpose_of(v, (const char *)val.data + DATASET_PURPOSE,
	    val.len - DATASET_PURPOSE);
	snprintf(out->purpose_name, sizeof(out->purpose_name), "%.*s",
	    (int)(val.len - DATASET_PURPOSE),
	    (const char *)val.data + DATASET_PURPOSE);
	snprintf(out->id, sizeof(out->id), "%s", id);
	return 0;
}

/* A "num:" record: purpose NUL id. */
static int
parse_num(struct vault *v, uint32_t number, const struct store_val *val,
    struct dataset_info *out)
{
	const char *p = val->data, *nul = memchr(p, '\0', val->len);
	size_t plen, ilen;

	if (nul == NULL || (plen = (size_t)(nul - p)) == 0 ||
	    plen >= SCHEMA_NAME_MAX ||
	    (ilen = val->len - plen - 1) > DATASET_ID_MAX) {
		log_error("a dataset record is corrupt");
		return VAULT_ERR_STATE;
	}
	out->number = number;
	out->purpose = purpose_of(v, p, plen);
	memcpy(out->purpose_name, p, plen);
	out->purpose_name[plen] = '\0';
	memcpy(out->id, nul + 1, ilen);
	out->id[ilen] = '\0';
	return 0;
}

int
dataset_by_number(struct vault *v, struct store_txn *txn, uint32_t number,
    struct dataset_info *out)
{
	uint8_t key[DATASET_NUM_KEY_BYTES];
	struct store_val k = { sizeof(key), key }, val;
	int rc;

	num_key(key, number);
	if ((rc = store_get(txn, STORE_DATASETS, k.data, k.len,
	    &val)) == VAULT_ERR_NOT_FOUND)
		return VAULT_ERR_NOT_FOUND;
	if (rc != 0)
		return rc;
	return parse_num(v, number, &val, out);
}

int
dataset_each(struct vault *v, struct store_txn *txn,
    int (*fn)(const struct dataset_info *ds, void *arg), void *arg)
{
	struct store_cursor *cur = NULL;
	uint8_t key[DATASET_NUM_KEY_BYTES];
	struct store_val k = { sizeof(key), key }, val;
	struct dataset_info ds;
	int rc, r = 0;

	num_key(key, 0);
	if ((rc = store_cursor_open(txn, STORE_DATASETS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len != DATASET_NUM_KEY_BYTES || memcmp(k.data,
		    DATASET_NUM_PREFIX, DATASET_NUM_PREFIX_LEN) != 0)
			break;
		if ((r = parse_num(v, store_get_u32((const uint8_t *)k.data +
		    DATASET_NUM_PREFIX_LEN), &val, &ds)) != 0 ||
		    (r = fn(&ds, arg)) != 0)
			break;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	return r;
}

int
dataset_find(struct vault *v, const char *id, struct dataset_info *out)
{
	struct store_txn *txn;
	int r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	r = dataset_by_id(v, txn, id, out);
	store_read_end(txn);
	return r;
}

int
dataset_find_numbers(struct vault *v, const uint32_t *numbers, size_t n,
    struct dataset_info *out)
{
	struct store_txn *txn;
	int r = 0;

	if (n == 0)
		return 0;
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		/* The same dataset as the one before: most events of a batch. */
		if (i > 0 && numbers[i] == numbers[i - 1]) {
			out[i] = out[i - 1];
			continue;
		}
		r = dataset_by_number(v, txn, numbers[i], &out[i]);
		if (r == VAULT_ERR_NOT_FOUND || r == VAULT_ERR_STATE) {
			out[i].number = 0;
			r = 0;
		}
	}
	store_read_end(txn);
	return r;
}

struct create_job {
	struct vault *v;
	const char *id;
	int purpose;
	struct dataset_info info;
};

static int
create_apply(struct store_txn *txn, void *arg)
{
	struct create_job *job = arg;
	const char *pname = job->v->schema->purposes[job->purpose].name;
	uint8_t key[DATASET_ID_PREFIX_LEN + DATASET_ID_MAX], num[4];
	uint8_t rkey[DATASET_NUM_KEY_BYTES];
	uint8_t rec[DATASET_PURPOSE + SCHEMA_NAME_MAX + 1 + DATASET_ID_MAX];
	struct store_val k, v;
	size_t plen = strlen(pname), ilen = strlen(job->id);
	int rc, r;

	if ((r = dataset_by_id(job->v, txn, job->id, &job->info)) != VAULT_ERR_NOT_FOUND)
		return r;
	rc = meta_get(txn, META_NEXT_DATASET, 0, &v);
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		return rc;
	job->info.number = rc == 0 && v.len == 4 ? store_get_u32(v.data) : 1;
	job->info.purpose = job->purpose;
	snprintf(job->info.purpose_name, sizeof(job->info.purpose_name), "%s",
	    pname);
	store_put_u32(num, job->info.number + 1);
	if ((rc = meta_put(txn, META_NEXT_DATASET, 0, num, sizeof(num))) != 0)
		return rc;
	store_put_u32(rec + DATASET_NUMBER, job->info.number);
	memcpy(rec + DATASET_PURPOSE, pname, plen);
	k = (struct store_val){ id_key(key, job->id), key };
	v = (struct store_val){ DATASET_PURPOSE + plen, rec };
	if ((rc = store_put(txn, STORE_DATASETS, k.data, k.len, v.data, v.len,
	    0)) != 0)
		return rc;
	num_key(rkey, job->info.number);
	memcpy(rec, pname, plen);
	rec[plen] = '\0';
	memcpy(rec + plen + 1, job->id, ilen);
	k = (struct store_val){ sizeof(rkey), rkey };
	v = (struct store_val){ plen + 1 + ilen, rec };
	if ((rc = store_put(txn, STORE_DATASETS, k.data, k.len, v.data, v.len,
	    0)) != 0)
		return rc;
	return 0;
}

int
dataset_get_or_create(struct vault *v, const char *id, int purpose,
    uint32_t *number, int *bound)
{
	struct create_job job = { .v = v, .id = id, .purpose = purpose };
	struct store_txn *txn;
	int r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	r = dataset_by_id(v, txn, id, &job.info);
	store_read_end(txn);
	if (r == VAULT_ERR_NOT_FOUND)
		r = writer_submit(v->wr, create_apply, &job);
	if (r != 0)
		return r;
	*number = job.info.number;
	*bound = job.info.purpose;
	return job.info.purpose == purpose ? 0 : VAULT_ERR_STATE;
}

static void
use_key(uint8_t buf[DATASET_USE_PREFIX_LEN + 4], uint32_t number)
{
	memcpy(buf, DATASET_USE_PREFIX, DATASET_USE_PREFIX_LEN);
	store_put_u32(buf + DATASET_USE_PREFIX_LEN, number);
}

/* Decodes a "use:" record; VAULT_ERR_STATE when it does not read. */
static int
parse_use(const struct store_val *val, struct dataset_use *out)
{
	const char *p = (const char *)val->data + DATASET_USE_NAMES;
	size_t left, len;

	out->n = 0;
	if (val->len < DATASET_USE_NAMES || val->len > DATASET_USE_MAX)
		return VAULT_ERR_STATE;
	out->first_ms = store_get_u64((const uint8_t *)val->data +
	    DATASET_USE_FIRST);
	out->last_ms = store_get_u64((const uint8_t *)val->data +
	    DATASET_USE_LAST);
	for (left = val->len - DATASET_USE_NAMES; left > 0; left -= len + 1,
	    p += len + 1) {
		const char *nul = memchr(p, '\0', left);

		if (nul == NULL || (len = (size_t)(nul - p)) == 0 ||
		    len >= SCHEMA_NAME_MAX || out->n == SCHEMA_MAX_ATTRS ||
		    (out->n > 0 && strcmp(out->names[out->n - 1], p) >= 0))
			return VAULT_ERR_STATE;
		memcpy(out->names[out->n++], p, len + 1);
	}
	return 0;
}

/* How stale a use's last time may be before a call writes it again. */
#define USE_REFRESH_MS 60000

struct use_job {
	struct vault *v;
	uint32_t number;
	const int *attrs;
	size_t n;
	struct dataset_use use;
	uint8_t rec[DATASET_USE_MAX];
};

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int
use_apply(struct store_txn *txn, void *arg)
{
	struct use_job *job = arg;
	struct dataset_use *u = &job->use;
	uint8_t key[DATASET_USE_PREFIX_LEN + 4];
	uint64_t now = store_now_ms();
	struct store_val val;
	size_t off = DATASET_USE_NAMES, before;
	int rc;

	use_key(key, job->number);
	rc = store_get(txn, STORE_DATASETS, key, sizeof(key), &val);
	if (rc == VAULT_ERR_NOT_FOUND) {
		u->n = 0;
		u->first_ms = now;
	} else if (rc != 0) {
		return rc;
	} else if (parse_use(&val, u) != 0) {
		/* Rebuilt from this call: the record is evidence, not state. */
		log_error("a dataset's use record does not read; starting it "
		    "again");
		u->n = 0;
		u->first_ms = now;
	}
	before = u->n;
	for (size_t i = 0; i < job->n; i++) {
		const char *name = job->v->schema->attrs[job->attrs[i]].name;

		if (bsearch(name, u->names, before, SCHEMA_NAME_MAX,
		    cmp_name) == NULL && u->n < SCHEMA_MAX_ATTRS)
			snprintf(u->names[u->n++], SCHEMA_NAME_MAX, "%s", name);
	}
	qsort(u->names, u->n, SCHEMA_NAME_MAX, cmp_name);
	u->last_ms = now;
	store_put_u64(job->rec + DATASET_USE_FIRST, u->first_ms);
	store_put_u64(job->rec + DATASET_USE_LAST, u->last_ms);
	for (size_t i = 0; i < u->n; i++) {
		size_t len = strlen(u->names[i]) + 1;

		if (i > 0 && strcmp(u->names[i - 1], u->names[i]) == 0)
			continue;	/* asked twice in one call */
		memcpy(job->rec + off, u->names[i], len);
		off += len;
	}
	return store_put(txn, STORE_DATASETS, key, sizeof(key), job->rec, off,
	    0);
}

/* Whether use already says all of it: names, and a last time this recent. */
static bool
use_current(struct vault *v, const struct dataset_use *use, const int *attrs,
    size_t n)
{
	if (store_now_ms() - use->last_ms >= USE_REFRESH_MS)
		return false;
	for (size_t i = 0; i < n; i++)
		if (bsearch(v->schema->attrs[attrs[i]].name, use->names, use->n,
		    SCHEMA_NAME_MAX, cmp_name) == NULL)
			return false;
	return true;
}

int
dataset_record_use(struct vault *v, uint32_t number, const int *attrs,
    size_t n)
{
	struct use_job *job = malloc(sizeof(*job));
	int r;

	if (job == NULL)
		return VAULT_ERR_NOMEM;
	/* A write per call at most once a minute: the writer is shared. */
	if (dataset_use_find(v, number, &job->use) == 0 &&
	    use_current(v, &job->use, attrs, n)) {
		free(job);
		return 0;
	}
	*job = (struct use_job){ .v = v, .number = number, .attrs = attrs,
	    .n = n };
	r = writer_submit(v->wr, use_apply, job);
	free(job);
	return r;
}

int
dataset_use_find(struct vault *v, uint32_t number, struct dataset_use *out)
{
	uint8_t key[DATASET_USE_PREFIX_LEN + 4];
	struct store_txn *txn;
	struct store_val val;
	int r;

	use_key(key, number);
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	r = store_get(txn, STORE_DATASETS, key, sizeof(key), &val);
	if (r == 0)
		r = parse_use(&val, out);
	store_read_end(txn);
	return r;
}
