#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crashpoint.h"
#include "audit/audit.h"
#include "engine/consumer.h"
#include "engine/dataset.h"
#include "engine/dellog.h"
#include "engine/deletion.h"
#include "engine/ledger.h"
#include "store/meta.h"

const char *
deletion_check_request_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0)
		return "must not be empty";
	if (n > DELETION_REQUEST_ID_MAX)
		return "longer than 128 bytes";
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return "must be printable ASCII without spaces";
	return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
deletion_pending(struct store_txn *txn, uint32_t version, uint64_t *count)
{
	return meta_get_u64_or0(txn, META_PENDING, version, count);
}

int
deletion_mark_final_txn(struct store_txn *txn, uint32_t version)
{
	return meta_del(txn, META_PENDING, version);
}

/* One ledger event per dataset, and the receipt's dataset list. */
static int
append_events(struct vault *v, struct store_txn *txn, const struct removal *rm,
    uint64_t now, uint64_t *next_seq, struct receipt *out)
{
	int r;

	if (rm->n_datasets > 0 &&
	    (out->datasets = calloc(rm->n_datasets, sizeof(char *))) == NULL)
		return VAULT_ERR_NOMEM;
	for (size_t i = 0; i < rm->n_datasets; i++) {
		struct dataset_info ds;

		if ((r = dataset_by_number(v, txn, rm->datasets[i], &ds)) != 0)
			return r;
		if ((out->datasets[out->n_datasets] = strdup(ds.id)) == NULL)
			return VAULT_ERR_NOMEM;
		out->n_datasets++;
		if ((r = ledger_append_txn(txn, LEDGER_DELETION, (*next_seq)++,
		    now, rm->datasets[i], rm->pseudonyms[i])) != 0)
			return r;
	}
	if (out->n_datasets > 1)
		qsort(out->datasets, out->n_datasets, sizeof(char *), cmp_str);
	return 0;
}

static int
delete_one(struct vault *v, struct store_txn *txn,
    const struct deletion_request *req, uint64_t *next_seq,
    struct lineage_doomed *doomed, struct receipt *out)
{
	const uint8_t *ref = req->ref;
	struct removal rm;
	uint8_t head[AUDIT_HASH_BYTES];
	uint64_t head_seq, pending;
	bool found;
	int r;

	if ((r = receipt_find_txn(txn, req->request_id, ref, out, &found)) != 0 ||
	    found)
		return r;
	memset(out, 0, sizeof(*out));
	if ((r = consumer_remove_txn(v, txn, ref, doomed, &rm)) != 0)
		goto out;
	snprintf(out->request_id, sizeof(out->request_id), "%s", req->request_id);
	crypto_hex(ref, CRYPTO_REF_BYTES, out->ref_hex);
	out->found = rm.found;
	out->epoch = rm.found ? rm.epoch : keyring_active_version(v->kr);
	out->deleted_at_ms = store_now_ms();
	if ((r = audit_head(txn, &head_seq, head)) != 0)
		goto out;
	if (head_seq > 0)
		crypto_hex(head, AUDIT_HASH_BYTES, out->audit_head);
	if ((r = append_events(v, txn, &rm, out->deleted_at_ms, next_seq, out)) != 0 ||
	    (r = receipt_render(out)) != 0)
		goto out;
	VAULT_CRASH_POINT("delete.before_sign");
	keyring_sign(v->kr, out->signed_bytes, out->signed_len, out->signature);
	VAULT_CRASH_POINT("delete.before_store_receipt");
	if ((r = receipt_put_txn(txn, ref, out)) != 0)
		goto out;
	VAULT_CRASH_POINT("delete.after_store_receipt");
	/* For restores: a backup older than this deletion re-applies it. */
	if (rm.found &&
	    (r = dellog_append_txn(txn, ref, out->deleted_at_ms)) != 0)
		goto out;
	if (rm.found) {
		r = meta_get_u64_or0(txn, META_PENDING, rm.epoch, &pending);
		if (r == 0)
			r = meta_put_u64(txn, META_PENDING, rm.epoch,
			    pending + 1);
	}
out:
	removal_clear(&rm);
	return r;
}

struct run_job {
	struct vault *v;
	const struct deletion_request *reqs;
	size_t n;
	struct receipt *out;
	size_t bad;
};

static int
run_apply(struct store_txn *txn, void *arg)
{
	struct run_job *job = arg;
	struct lineage_doomed doomed = { 0 };
	uint64_t next;
	int r;

	if ((r = ledger_next(txn, LEDGER_DELETION, &next)) != 0)
		return r;
	for (size_t i = 0; i < job->n; i++) {
		struct key_version kv;

		if ((r = delete_one(job->v, txn, &job->reqs[i], &next, &doomed,
		    &job->out[i])) != 0) {
			job->bad = i;
			lineage_doomed_free(&doomed);
			return r;
		}
		if (keyring_version_get(job->v->kr, txn, job->out[i].epoch,
		    &kv) == 0 &&
		    kv.destroyed)
			job->out[i].final_at_ms = kv.destroyed_ms;
	}
	/* The batch's lineage rows, dataset by dataset (lineage.h). */
	r = lineage_forget(txn, &doomed);
	lineage_doomed_free(&doomed);
	if (r == 0 && (r = ledger_set_next(txn, LEDGER_DELETION, next)) == 0)
		VAULT_CRASH_POINT("delete.before_commit");
	return r;
}

int
deletion_run(struct vault *v, const struct deletion_request *reqs, size_t n,
    struct receipt *out, size_t *bad)
{
	struct run_job job = { v, reqs, n, out, 0 };
	int r;

	memset(out, 0, n * sizeof(*out));
	r = writer_submit(v->wr, run_apply, &job);
	if (r == 0)
		VAULT_CRASH_POINT("delete.after_commit");	/* durable, no reply yet */
	if (r != 0) {
		for (size_t i = 0; i < n; i++)
			receipt_clear(&out[i]);
		*bad = job.bad;
	}
	return r;
}
