/*
 * Offline maintenance commands of vaultd (maint.c): restore a backup,
 * compact the store, migrate its format. Each runs with the daemon
 * stopped and changes no file when it refuses. docs/backup.md.
 *
 * The backup file (a 4096-byte manifest, then the compact store copy) and
 * the deletion export are described in backupfile.h.
 */
#ifndef VAULT_MAINT_H
#define VAULT_MAINT_H

#include <stdbool.h>

#include "conf/config.h"

#define MAINT_BACKUP_HEADER 4096

/*
 * The checks a restore makes before it writes anything: the backup's
 * manifest, the deletion export (NULL with no_deletions), an absent or
 * empty store directory, the master key files the backup needs in
 * keys_dir. 0, or 1 with the reason logged.
 */
int maint_restore_check(const char *backup, const char *deletions,
    const char *store_dir, const char *keys_dir);
/*
 * vaultd --restore: the backup into cfg's store directory, made aside and
 * renamed into place, with every deletion of the export at or after the
 * backup's deletion sequence applied again (and audited). Exit status.
 */
int maint_restore(const struct config *cfg, const char *backup,
    const char *deletions);
/* vaultd --compact: store/copy.h's swap. Exit status. */
int maint_compact(const struct config *cfg);
/* vaultd --migrate: store/migrate.h. Exit status. */
int maint_migrate(const struct config *cfg);

#endif
