/*
 * The daemon's configuration file (libconfig syntax), described by a table
 * of settings with types, defaults and bounds; see docs/config.md.
 * Relative paths are taken relative to the config file's directory.
 */
#ifndef VAULT_CONFIG_H
#define VAULT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/schema.h"
#include "util/vault_err.h"

struct config {
	char *listen;			/* host:port */
	char *store_dir;		/* the store's directory */
	char *keys_dir;			/* master-N.key files */
	char *policy_file;
	char *token_pepper_file;
	bool insecure_plaintext;	/* development only, loopback only */
	char *tls_cert, *tls_key, *tls_client_ca;	/* mTLS; NULL: none */
	bool tls_require_client_cert;
	int workers;			/* handler threads */
	int cq_threads;			/* gRPC completion-queue threads */
	int max_request_bytes;
	int map_size_mb;
	int store_high_water_pct;	/* ordinary writes stop at this % of the map */
	int disk_reserve_mb;		/* kept allocated past the data file's end */
	int audit_journal_reserve_mb;	/* kept allocated in each journal file */
	int shutdown_grace_ms;
	int max_attributes_per_request;
	int max_consumer_id_bytes;
	int max_group;			/* requests per group commit */
	int max_streams;		/* authenticated streams at once */
	int backup_stall_s;		/* a Backup client reading nothing: ended */
	int max_streams_per_principal;
	int stream_memory_rows;		/* a stream's rows held; the rest spill */
	int stream_spill_max_mb;	/* every stream's temporary files, in all */
	int max_public_streams;		/* unauthenticated (health Watch) */
	int max_public_streams_per_peer;
	int auth_failures_per_peer;	/* a peer's failed authentications a minute */
	int denial_audit_interval_s;	/* anonymous denials: one entry per interval */
	int transport_memory_mb;	/* gRPC's buffers of every connection */
	int max_pending_requests;	/* calls awaiting their request message */
	int max_pending_requests_per_peer;
	int request_timeout_ms;
	int suppression_k;		/* default k for categorical features */
	int ledger_retention_s;		/* deletion events are kept this long */
	int audit_anomaly_factor;	/* audit report: a day above this x baseline */
	int consumer_inactive_days;	/* 0: off; else deleted when not written */
	int drop_suppression_days;	/* DROP deletions suppress re-collection */
	int request_retention_s;	/* know, delete, opt-out request records */
	bool require_mlock;		/* refuse to start when keys cannot be locked */
	int janitor_interval_ms;	/* collection and expiry passes */
	int max_delete_batch;		/* requests in one DeleteConsumers */
	int shred_epoch_s;		/* rotate the master key this often; 0: never */
	int shred_retain_s;		/* destroy a replaced version after this */
	char *log_level;
	char *audit_broken;		/* "refuse" or "not_serving" */
	char *log_format;		/* "text" or "json" */
	char *metrics_listen;		/* host:port, "off"; NULL: unset */
	int metrics_dek_refresh_s;	/* DEK counts are cached this long */
	char *reflection;		/* "authenticated", "public" or "off" */
	int reflection_idle_s;		/* a reflection stream sending nothing */
	char *key_provider;		/* "file" or "pkcs11" (crypto/keyprov.h) */
	char *pkcs11_module;		/* key_provider = "pkcs11": all three set */
	char *pkcs11_token_label;
	char *pkcs11_pin_file;
	char *store_backend;		/* "lmdb" or "postgresql" (store.h) */
	char *postgresql_conninfo;	/* libpq conninfo; may hold a password:
					 * never logged */
	int postgresql_pool;		/* read connections, at most */
	int postgresql_connect_timeout_s; /* a lost connection is retried */
	char *replica_name;		/* NULL: a single node (replica.c) */
	char *journal_dir;		/* NULL: store_dir */
	struct schema schema;
};

/*
 * Loads path. On failure returns VAULT_ERR_CONFIG and writes a message with
 * the file, line and setting into err (errlen bytes).
 */
int config_load(struct config **out, const char *path, char *err,
    size_t errlen) VAULT_WUR;
void config_free(struct config *cfg);

/*
 * replica_name: 1 to CONFIG_REPLICA_NAME_MAX of [A-Za-z0-9._-]; required
 * with store_backend = "postgresql", where every replica shares the store
 * and each keeps its own audit journal. config_load calls it.
 */
#define CONFIG_REPLICA_NAME_MAX 40
int config_check_replica(const struct config *cfg, char *err,
    size_t errlen) VAULT_WUR;

/* The store config names (store_dir, or the PostgreSQL settings). */
struct store_params;
void config_store_params(const struct config *cfg, struct store_params *p);

/*
 * Calls changed(name, arg) for every setting whose value differs between a
 * and b, in the settings table's order, then "schema" and "purposes" when
 * those differ. For SIGHUP, which applies some and reports the rest.
 */
void config_diff(const struct config *a, const struct config *b,
    void (*changed)(const char *name, void *arg), void *arg);

/* True when host:port names a loopback address (127.0.0.0/8, ::1, localhost). */
bool config_listen_is_loopback(const char *listen);

#endif
