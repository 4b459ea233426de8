/*
 * The engine as one object: configuration and schema, store, keyring and
 * writer. Handlers and benchmarks reach the data through it.
 */
#ifndef VAULT_VAULT_H
#define VAULT_VAULT_H

#include <stdatomic.h>
#include <stdbool.h>

#include "audit/audit.h"
#include "conf/config.h"
#include "crypto/keyring.h"
#include "store/store.h"
#include "engine/tokenize.h"
#include "util/vault_err.h"
#include "store/writer.h"

struct replica;

struct vault {
	_Atomic uint64_t audit_anomalies;	/* the last audit report's */
	_Atomic uint64_t drop_suppressed;	/* writes on the DROP suppression list */
	_Atomic uint64_t drop_indexed;		/* consumers the DROP build indexed */
	_Atomic int drop_index_state;		/* 0 none, 1 building, 2 built */
	const struct config *cfg;
	const struct schema *schema;
	struct store *store;
	struct keyring *kr;
	struct writer *wr;
	struct tokenizer *tok;
	/* The audit log; its journal opens with vault_open_journal. */
	struct audit_log audit;
	/*
	 * The daemon's place among replicas on the store (replica.h); NULL
	 * in the maintenance commands and tests, which then maintain alone.
	 */
	struct replica *rep;
	int owner_fd;			/* vault_open_journal's store lock, or -1 */
};

/*
 * What vault_open may create. A store is missing when the store directory
 * or its data file is, or the data file is empty; the keys exist when the
 * keys directory holds a master key file. A missing store whose keys exist
 * is refused in every mode: the store was lost, and a new one would answer
 * NOT_FOUND for every consumer. A refusal writes nothing.
 */
enum vault_open_mode {
	VAULT_OPEN_EXISTING,	/* the store must exist (vaultd --config) */
	VAULT_OPEN_CREATE,	/* no store and no key: a new vault (--dev) */
	VAULT_OPEN_INIT,	/* only a new vault: no store and no key (--init) */
};

/*
 * Opens the store and keyring named by cfg and starts the writer. A new
 * vault gets its store directory (when missing) and master-1.key. The
 * store is opened shared (an in-process reader or loader beside a running
 * vaultd, tests): a store journaled by another process is only read, and
 * no journal is kept (vault_open_locked takes the store for itself).
 */
int vault_open(struct vault **out, const struct config *cfg,
    enum vault_open_mode mode) VAULT_WUR;
/*
 * Opens the audit journal (journal.h) in the store directory: where the
 * entries of calls that write nothing go. Only the daemon and its one-off
 * maintenance commands open it; its lock keeps a second process out. First
 * it takes vault_lock_store for this process, unless owner_fd holds it.
 */
int vault_open_journal(struct vault *v) VAULT_WUR;

/*
 * Locks an LMDB store (store_dir/vaultd.lock) for this process until *fd
 * is closed: exclusive for a single node (no replica_name) and the
 * maintenance commands, shared among named replicas. A single node never
 * re-reads the key versions, so no other process may serve its store.
 * Taken before the vault opens, a refusal changes nothing. *fd is -1 when
 * there is nothing to lock (no store directory yet; PostgreSQL).
 * VAULT_ERR_STATE, logged with the reason, when another process holds it.
 */
int vault_lock_store(const struct config *cfg, bool exclusive,
    int *fd) VAULT_WUR;
/*
 * vault_open with the store locked first (vault_lock_store, held by the
 * vault until vault_close): the daemon (exclusive unless a replica) and
 * the maintenance commands (exclusive). Exclusive, the store's journal is
 * recovered after a crash and, on a single node, kept (store.h). A refusal
 * changes nothing but, after a crash, the data file's meta pages (the
 * checkpoint's, written back before anything reads the store).
 */
int vault_open_locked(struct vault **out, const struct config *cfg,
    enum vault_open_mode mode, bool exclusive) VAULT_WUR;
/* Closes the journal, if one was opened, then the rest. */
void vault_close(struct vault *v);

/*
 * Liveness, not health: returns once the writer thread has taken a no-op
 * request (committed without a sync), whatever its result. A writer stuck
 * in a commit or a sync never returns. For the systemd watchdog.
 */
void vault_ping(struct vault *v);

#endif
