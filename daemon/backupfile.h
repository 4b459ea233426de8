/*
 * The two files of a backup (backupfile.c): the manifest at the head of a
 * backup file and the deletion export. vaultctl writes them
 * (client/cmd_backup.c); vaultd --restore reads them (maint.c). Both are
 * text, read from outside input: every field is checked, unknown manifest
 * fields with a number are skipped (a later vaultd may add some), and nothing is
 * trusted until the data's hash matched (maint.c).
 *
 * Manifest (the first 4096 bytes of a backup, NUL-padded), one "name
 * value" line each: vaultd-backup 1, created_ms, store_format,
 * key_versions (comma-separated), deletion_seq, vault_id (64 hex),
 * incarnation (32 hex), data_bytes, data_blake2b (64 hex), signature
 * (128 hex).
 *
 * Deletion export: "vaultd-deletions 1", "vault_id HEX", "incarnation
 * HEX", "after_seq N",
 * "expired_through N" (optional), "count N", "signature HEX" (128 hex:
 * engine/backup.h says what it covers), then one line a deletion,
 * "SEQ REF_HEX DELETED_AT_MS", in increasing SEQ order.
 */
#ifndef VAULT_BACKUPFILE_H
#define VAULT_BACKUPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "engine/backup.h"

struct backupfile_manifest {
	uint64_t created_ms, deletion_seq, data_bytes;
	uint32_t store_format;
	uint32_t versions[BACKUP_MAX_VERSIONS];
	size_t n_versions;
	uint8_t vault_id[KEYRING_PK_BYTES];
	uint8_t hash[BACKUP_HASH_BYTES];
	uint8_t sig[KEYRING_SIG_BYTES];
	uint8_t incarnation[16];
};

struct backupfile_deletion {
	uint64_t seq, at_ms;
	uint8_t ref[CRYPTO_REF_BYTES];
};

struct backupfile_export {
	uint8_t vault_id[KEYRING_PK_BYTES];
	uint64_t after_seq, expired_through, count;
	uint8_t sig[KEYRING_SIG_BYTES];
	uint8_t incarnation[16];
	struct backupfile_deletion *d;	/* n of them, malloc'd */
	size_t n;
};

/*
 * Parses the manifest in text[0..len) (text is modified). 0, or -1 when a
 * required field is missing or any known field is malformed.
 */
int backupfile_manifest_parse(char *text, size_t len,
    struct backupfile_manifest *m);

/*
 * Parses an export of len bytes. 0, or -1 with *line the first bad line
 * (0: the header is incomplete, or count differs from the lines: a cut
 * file). e->d is freed by backupfile_export_free, also after -1.
 */
int backupfile_export_parse(const char *data, size_t len,
    struct backupfile_export *e, size_t *line);
void backupfile_export_free(struct backupfile_export *e);

#endif
