/*
 * Hot backups (backup.c): a compact, consistent copy of the store
 * (store/copy.h), streamed to a sink while the vault serves, with its
 * manifest: what a restore needs to know before it opens the copy.
 *
 * The manifest is read just before the copy's snapshot is taken:
 *  - deletion_seq: the deletion log's next sequence number (dellog.h). A
 *    deletion logged at or after it may be missing from the copy; a
 *    restore re-applies every such one. Deletions between the manifest and
 *    the snapshot are in the copy already; re-applying them is harmless,
 *    unless the consumer was written again in those milliseconds: then
 *    the restore deletes it again, erring on the side of the deletion.
 *  - versions: the master key versions not destroyed before or after the
 *    copy (read again once it is complete) (a superset of those the copy's records are sealed under). A
 *    restore needs their key files; once all are destroyed the copy is
 *    crypto-shredded and cannot be restored, by design.
 *  - vault_id: the receipt public key, which names the vault: a deletion
 *    export of another vault is refused.
 */
#ifndef VAULT_BACKUP_H
#define VAULT_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "engine/vault.h"

#define BACKUP_MAX_VERSIONS 64
#define BACKUP_HASH_BYTES 32		/* BLAKE2b-256 of the data */
#define BACKUP_CHUNK_BYTES (256 * 1024)

struct backup_manifest {
	uint64_t created_ms;
	uint32_t store_format;
	uint64_t deletion_seq;
	uint32_t versions[BACKUP_MAX_VERSIONS];
	size_t n_versions;
	uint8_t vault_id[KEYRING_PK_BYTES];
	uint8_t incarnation[16];		/* dellog.h */
	uint64_t bytes;				/* the data's size */
	uint8_t hash[BACKUP_HASH_BYTES];	/* and BLAKE2b-256 */
	uint8_t sig[KEYRING_SIG_BYTES];		/* backup_manifest_sign */
};

/*
 * Receives the data in order, then (once the copy is complete) the
 * manifest; non-zero stops the backup.
 */
struct backup_sink {
	int (*data)(void *arg, const uint8_t *data, size_t len);
	int (*manifest)(void *arg, const struct backup_manifest *m);
	void *arg;
};

/*
 * Streams a backup to sink: the compact copy in chunks of at most
 * BACKUP_CHUNK_BYTES, then the manifest with the data's size and hash.
 * Nothing is written to disk on the way (the copy goes through a pipe). A
 * sink error is returned as it was.
 */
int backup_run(struct vault *v, const struct backup_sink *sink) VAULT_WUR;

/*
 * Signatures (docs/backup.md "Authenticity"). The manifest and the deletion
 * export are files anyone with write access to the backup storage can edit,
 * and they decide which deletions a restore applies again: a dropped line
 * or a raised deletion_seq would bring a deleted consumer back. So the
 * vault signs both with its receipt signing key (Ed25519; vault_id is its
 * public key) and a restore verifies them before it writes anything, and
 * that the copy's own receipt key is vault_id once it opens. Each signed
 * message is a domain label and a BLAKE2b-256 digest of the fields in a
 * fixed binary layout, so no text formatting is signed and no receipt
 * signature can pass for one of these.
 */
#define BACKUP_SIG_MSG_BYTES (16 + BACKUP_HASH_BYTES)

/* The message the manifest's signature covers (every field but sig). */
void backup_manifest_message(const struct backup_manifest *m,
    uint8_t msg[BACKUP_SIG_MSG_BYTES]);

/* The deletion export's, built a record at a time. */
struct backup_export_digest {
	crypto_generichash_state h;
	uint64_t count;
};
void backup_export_begin(struct backup_export_digest *d,
    const uint8_t vault_id[KEYRING_PK_BYTES], const uint8_t incarnation[16],
    uint64_t after_seq);
void backup_export_add(struct backup_export_digest *d, uint64_t seq,
    const uint8_t ref[CRYPTO_REF_BYTES], uint64_t deleted_at_ms);
void backup_export_message(struct backup_export_digest *d,
    uint64_t expired_through, uint8_t msg[BACKUP_SIG_MSG_BYTES]);

/* 0 when sig is vault_id's signature of msg. */
int backup_verify(const uint8_t msg[BACKUP_SIG_MSG_BYTES],
    const uint8_t sig[KEYRING_SIG_BYTES],
    const uint8_t vault_id[KEYRING_PK_BYTES]);

#endif
