/*
 * The gRPC server runtime on gRPC C core: completion-queue threads, a worker
 * pool, dispatch by full method path, the authorization hook, and graceful
 * shutdown.
 */
#ifndef VAULT_SERVER_H
#define VAULT_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/auth.h"
#include "rpc/reqcheck.h"
#include "rpc/rpc.h"
#include "util/vault_err.h"

struct server_opts {
	const char *listen;
	/* mTLS when tls_cert is set: PEM files, read again on server_reload. */
	const char *tls_cert, *tls_key, *tls_client_ca;
	bool tls_require_client_cert;
	int cq_threads;
	int workers;
	int max_request_bytes;
	int shutdown_grace_ms;
	int max_streams, max_streams_per_principal;
	int max_public_streams, max_public_streams_per_peer;
	int auth_failures_per_peer;	/* a minute, per peer and reason */
	int denial_audit_interval_s;	/* see denial.h */
	int transport_memory_mb;	/* gRPC's resource quota */
	int max_pending_requests;	/* calls awaiting their message, at once */
	int max_pending_requests_per_peer;	/* ... from one address */
	int request_timeout_ms;		/* a message later than this: cancelled */
	const struct rpc_audit_sink *audit;	/* NULL: no audit log */
	const struct reqcheck_opts *strings;	/* limits of request strings */
	/* Counters (stats.h) for dispatch_n_methods; NULL: none. Outlives the server. */
	struct rpc_stats *stats;
};

struct server;

/*
 * Binds and starts serving; the table and app must outlive the server. The
 * server takes its own reference to auth. server_start is server_bind then
 * server_run.
 */
int server_start(struct server **out, const struct server_opts *opts,
    const struct rpc_method *methods, size_t n_methods, void *app,
    struct auth *auth) VAULT_WUR;

/*
 * Binds the listening port and loads the TLS files, serving nothing yet:
 * what can fail about the network fails here, before the caller writes
 * anything. Then server_run (starts serving app) or server_discard.
 */
int server_bind(struct server **out, const struct server_opts *opts,
    const struct rpc_method *methods, size_t n_methods,
    struct auth *auth) VAULT_WUR;
void server_run(struct server *srv, void *app);
void server_discard(struct server *srv);

/*
 * Swaps in a new policy unless auth is NULL (calls under way keep the one
 * they started with), and has new TLS handshakes load the certificate
 * files again.
 */
void server_reload(struct server *srv, struct auth *auth);

/*
 * Stops accepting calls, lets in-flight calls finish within the grace
 * period, cancels the rest, then frees everything.
 */
void server_stop(struct server *srv);

/* Must run once before server_start, after blocking signals. */
void server_global_init(void);
void server_global_shutdown(void);

#endif
