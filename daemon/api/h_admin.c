/*
 * vault.v1.Admin: the hot backup and the deletion export (docs/backup.md).
 * Both are streams for the "backup" role; the runtime audits each call
 * (principal, method, outcome) before its first message.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <sodium.h>

#include "api/handlers.h"
#include "engine/backup.h"
#include "engine/dellog.h"
#include "engine/vault.h"
#include "util/log.h"
#include "vault/v1/admin.pb-c.h"

#define EXPORT_BATCH 512

/*
 * The copy's read snapshot lasts as long as the stream: a client that stops
 * reading would pin it forever, and LMDB cannot reuse a page freed after
 * it, so the store would grow until writes fail. backup_stall_s bounds it.
 */
static int
send_data(void *arg, const uint8_t *data, size_t len)
{
	Vault__V1__BackupChunk c = VAULT__V1__BACKUP_CHUNK__INIT;
	const struct vault *v = rpc_app(arg);

	c.data = (ProtobufCBinaryData){ len, (uint8_t *)data };
	return rpc_send_within(arg, &c.base, v->cfg->backup_stall_s * 1000);
}

static int
send_manifest(void *arg, const struct backup_manifest *m)
{
	Vault__V1__BackupChunk c = VAULT__V1__BACKUP_CHUNK__INIT;
	Vault__V1__BackupManifest mf = VAULT__V1__BACKUP_MANIFEST__INIT;

	mf.created_ms = m->created_ms;
	mf.store_format = m->store_format;
	mf.n_key_versions = m->n_versions;
	mf.key_versions = (uint32_t *)m->versions;
	mf.deletion_seq = m->deletion_seq;
	mf.vault_id = (ProtobufCBinaryData){ sizeof(m->vault_id),
	    (uint8_t *)m->vault_id };
	mf.data_bytes = m->bytes;
	mf.data_blake2b = (ProtobufCBinaryData){ sizeof(m->hash),
	    (uint8_t *)m->hash };
	mf.incarnation = (ProtobufCBinaryData){ sizeof(m->incarnation),
	    (uint8_t *)m->incarnation };
	mf.signature = (ProtobufCBinaryData){ sizeof(m->sig),
	    (uint8_t *)m->sig };
	c.manifest = &mf;
	return rpc_send(arg, &c.base);
}

/* One backup at a time: each pins a snapshot and a copy thread. */
static atomic_bool backup_running;

int
handle_backup(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	struct backup_sink sink = { send_data, send_manifest, ctx };
	const struct vault *v = rpc_app(ctx);
	int r;

	(void)msg;
	rpc_audit_detail(ctx, "hot backup (compact copy)");
	if (atomic_exchange(&backup_running, true))
		return rpc_fail(ctx, VAULT_ERR_LIMIT, "a backup is already "
		    "running; one at a time (each holds a snapshot of the store)");
	r = backup_run(rpc_app(ctx), &sink);
	atomic_store(&backup_running, false);
	if (r == 0)
		return 0;
	if (r == VAULT_ERR_DEADLINE) {
		log_warn("backup stopped: its client read nothing for %d s "
		    "(backup_stall_s)", v->cfg->backup_stall_s);
		return r;
	}
	if (rpc_cancelled(ctx))
		return VAULT_ERR_CANCELLED;
	if (r == VAULT_ERR_UNAVAILABLE)
		return rpc_fail(ctx, r, "the store has failed; no backup was made");
	if (r == VAULT_ERR_UNIMPLEMENTED)
		return rpc_fail(ctx, r, "Backup copies an LMDB store's file; a "
		    "PostgreSQL store is backed up with PostgreSQL's tools "
		    "(pg_basebackup, WAL archiving: docs/scaling.md)");
	return rpc_fail(ctx, r, "the backup failed (%s); see the server log",
	    vault_strerror(r));
}

static int
send_batch(struct rpc_ctx *ctx, const struct vault *v,
    struct dellog_entry *e, size_t n, uint64_t expired,
    const uint8_t *inc, const uint8_t *sig)
{
	Vault__V1__DeletionBatch b = VAULT__V1__DELETION_BATCH__INIT;
	Vault__V1__DeletionRecord *recs = NULL, **ptrs = NULL;
	int r = VAULT_ERR_NOMEM;

	if (n > 0 && ((recs = calloc(n, sizeof(*recs))) == NULL ||
	    (ptrs = calloc(n, sizeof(*ptrs))) == NULL))
		goto out;
	for (size_t i = 0; i < n; i++) {
		vault__v1__deletion_record__init(&recs[i]);
		recs[i].seq = e[i].seq;
		recs[i].consumer_ref = (ProtobufCBinaryData){ CRYPTO_REF_BYTES,
		    e[i].ref };
		recs[i].deleted_at_ms = e[i].deleted_at_ms;
		ptrs[i] = &recs[i];
	}
	b.vault_id = (ProtobufCBinaryData){ KEYRING_PK_BYTES,
	    (uint8_t *)keyring_receipt_public_key(v->kr) };
	b.n_records = n;
	b.records = ptrs;
	b.expired_through = expired;
	b.incarnation = (ProtobufCBinaryData){ DELLOG_INCARNATION_BYTES,
	    (uint8_t *)inc };
	if (sig != NULL)
		b.signature = (ProtobufCBinaryData){ KEYRING_SIG_BYTES,
		    (uint8_t *)sig };
	r = rpc_send(ctx, &b.base);
out:
	free(ptrs);
	free(recs);
	return r;
}

/*
 * The vault's signature of everything sent (backup.h), in a last batch of
 * its own: a restore refuses an export with a line dropped, changed or
 * added. expired_through is the largest seen, as vaultctl writes it.
 */
static int
send_signature(struct rpc_ctx *ctx, const struct vault *v,
    struct backup_export_digest *d, uint64_t expired, const uint8_t *inc)
{
	uint8_t msg[BACKUP_SIG_MSG_BYTES], sig[KEYRING_SIG_BYTES];

	backup_export_message(d, expired, msg);
	keyring_sign(v->kr, msg, sizeof(msg), sig);
	return send_batch(ctx, v, NULL, 0, expired, inc, sig);
}

/*
 * The log from after_seq to its end as it stands, in batches, then the
 * signature.
 */
int
handle_export_deletions(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__ExportDeletionsRequest *req = (const void *)msg;
	struct vault *v = rpc_app(ctx);
	struct backup_export_digest dg;
	uint8_t inc[DELLOG_INCARNATION_BYTES];
	struct dellog_entry *e;
	uint64_t after = req->after_seq, expired = 0, max_expired = 0;
	size_t n;
	int r;

	rpc_audit_detail(ctx, "deletions after seq %llu",
	    (unsigned long long)after);
	if ((r = dellog_incarnation(v, inc)) != 0)
		return r;
	if ((e = calloc(EXPORT_BATCH, sizeof(*e))) == NULL)
		return VAULT_ERR_NOMEM;
	backup_export_begin(&dg, keyring_receipt_public_key(v->kr), inc, after);
	for (;;) {
		if ((r = dellog_read(v, after, e, EXPORT_BATCH, &n,
		    &expired)) != 0)
			break;
		if (expired > max_expired)
			max_expired = expired;
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			backup_export_add(&dg, e[i].seq, e[i].ref,
			    e[i].deleted_at_ms);
		if ((r = send_batch(ctx, v, e, n, expired, inc, NULL)) != 0 ||
		    n < EXPORT_BATCH)
			break;
		after = e[n - 1].seq;
	}
	if (r == 0)
		r = send_signature(ctx, v, &dg, max_expired, inc);
	sodium_memzero(e, EXPORT_BATCH * sizeof(*e));
	free(e);
	return r;
}
