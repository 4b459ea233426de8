/*
 * The signed messages of a backup's manifest and of a deletion export
 * (backup.h). Fields go in as fixed-width little-endian integers and raw
 * bytes, in a fixed order, under a domain label of their own: the restore
 * recomputes the same message from the parsed text, whatever its spacing.
 */
#include <string.h>

#include "engine/backup.h"

static const char MANIFEST_LABEL[16] = "vaultd-backup-m1";
static const char EXPORT_LABEL[16] = "vaultd-dellog-e1";

static void
hash_u64(crypto_generichash_state *h, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	crypto_generichash_update(h, b, sizeof(b));
}

static void
finish(crypto_generichash_state *h, const char label[16],
    uint8_t msg[BACKUP_SIG_MSG_BYTES])
{
	memcpy(msg, label, 16);
	crypto_generichash_final(h, msg + 16, BACKUP_HASH_BYTES);
}

void
backup_manifest_message(const struct backup_manifest *m,
    uint8_t msg[BACKUP_SIG_MSG_BYTES])
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, NULL, 0, BACKUP_HASH_BYTES);
	crypto_generichash_update(&h, (const uint8_t *)MANIFEST_LABEL, 16);
	hash_u64(&h, m->created_ms);
	hash_u64(&h, m->store_format);
	hash_u64(&h, m->deletion_seq);
	hash_u64(&h, m->n_versions);
	for (size_t i = 0; i < m->n_versions; i++)
		hash_u64(&h, m->versions[i]);
	crypto_generichash_update(&h, m->vault_id, sizeof(m->vault_id));
	crypto_generichash_update(&h, m->incarnation, sizeof(m->incarnation));
	hash_u64(&h, m->bytes);
	crypto_generichash_update(&h, m->hash, sizeof(m->hash));
	finish(&h, MANIFEST_LABEL, msg);
}

void
backup_export_begin(struct backup_export_digest *d,
    const uint8_t vault_id[KEYRING_PK_BYTES], const uint8_t incarnation[16],
    uint64_t after_seq)
{
	crypto_generichash_init(&d->h, NULL, 0, BACKUP_HASH_BYTES);
	crypto_generichash_update(&d->h, (const uint8_t *)EXPORT_LABEL, 16);
	crypto_generichash_update(&d->h, vault_id, KEYRING_PK_BYTES);
	crypto_generichash_update(&d->h, incarnation, 16);
	hash_u64(&d->h, after_seq);
	d->count = 0;
}

void
backup_export_add(struct backup_export_digest *d, uint64_t seq,
    const uint8_t ref[CRYPTO_REF_BYTES], uint64_t deleted_at_ms)
{
	hash_u64(&d->h, seq);
	crypto_generichash_update(&d->h, ref, CRYPTO_REF_BYTES);
	hash_u64(&d->h, deleted_at_ms);
	d->count++;
}

/* The count and expired_through close the message: no line can go. */
void
backup_export_message(struct backup_export_digest *d,
    uint64_t expired_through, uint8_t msg[BACKUP_SIG_MSG_BYTES])
{
	hash_u64(&d->h, d->count);
	hash_u64(&d->h, expired_through);
	finish(&d->h, EXPORT_LABEL, msg);
}

int
backup_verify(const uint8_t msg[BACKUP_SIG_MSG_BYTES],
    const uint8_t sig[KEYRING_SIG_BYTES],
    const uint8_t vault_id[KEYRING_PK_BYTES])
{
	return crypto_sign_verify_detached(sig, msg, BACKUP_SIG_MSG_BYTES,
	    vault_id) == 0 ? 0 : -1;
}
