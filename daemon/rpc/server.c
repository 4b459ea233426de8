/*
 * The server: bound (the listening port, the completion queues, the
 * transport's limits, the credentials), run (the completion-queue,
 * worker and sweeper threads), reloaded, and stopped within the grace
 * period. The pieces: cq.c (a call's arrival), call.c (its end), worker.c,
 * ctx.c (the handler API), authz.c, tls.c, streams.c, pending.c,
 * counter.c, sweeper.c, alloc.c, reqcheck.c, denial.c, decode.c (a
 * request's bytes to a checked message), bidi.c (a bidirectional stream's
 * later requests).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "rpc/cq.h"
#include "rpc/denial.h"
#include "rpc/internal.h"
#include "rpc/server.h"
#include "rpc/sweeper.h"
#include "rpc/tls.h"
#include "rpc/worker.h"
#include "util/log.h"
#include "util/timeutil.h"

#define MAX_CALLS_PER_CONNECTION 256
/* How long a stop with no call left waits for idle connections to go. */
#define SHUTDOWN_IDLE_MS 50

static void
on_shutdown(struct tag *t, bool ok)
{
	struct server *srv = t->srv;

	(void)ok;
	pthread_mutex_lock(&srv->mu);
	srv->shutdown_done = true;
	pthread_cond_broadcast(&srv->state_cv);
	pthread_mutex_unlock(&srv->mu);
}

/*
 * gRPC core's own lines (a refused TLS handshake, a transport error) go
 * through the daemon's logger, in its format. Its ERROR lines are nearly
 * always a peer's failure (a bad handshake), not the daemon's, so they are
 * warnings; the daemon logs its own errors itself. Which of them gRPC
 * writes at all is its own setting (GRPC_VERBOSITY, ERROR by default).
 */
/*
 * gRPC's message on one line, its control characters as '?': it may quote
 * what a peer sent, and a newline would start a line that reads like the
 * daemon's own in the text format.
 */
static const char *
one_line(const char *in, char *out, size_t len)
{
	size_t i = 0;

	for (; in != NULL && in[i] != '\0' && i + 1 < len; i++)
		out[i] = (unsigned char)in[i] < 0x20 || in[i] == 0x7f ? '?' :
		    in[i];
	out[i] = '\0';
	return out;
}

static void
grpc_log_to_vault(gpr_log_func_args *args)
{
	enum log_level level = args->severity == GPR_LOG_SEVERITY_ERROR ?
	    LOG_LEVEL_WARN : args->severity == GPR_LOG_SEVERITY_INFO ?
	    LOG_LEVEL_INFO : LOG_LEVEL_DEBUG;
	const char *file = args->file != NULL ? strrchr(args->file, '/') : NULL;
	struct log_field f[2];
	char msg[1024];

	f[0] = LOG_FIELD_STR("file", file != NULL ? file + 1 :
	    args->file != NULL ? args->file : "?");
	f[1] = LOG_FIELD_INT("line", args->line);
	log_fields(level, "grpc", f, 2, "%s", one_line(args->message, msg,
	    sizeof(msg)));
}

void
server_global_init(void)
{
	gpr_set_log_function(grpc_log_to_vault);
	grpc_init();
}

void
server_global_shutdown(void)
{
	grpc_shutdown();
}

static void
wait_until(struct server *srv, bool (*cond)(struct server *), int timeout_ms)
{
	struct timespec ts = time_after_ms(timeout_ms < 0 ? 0 : timeout_ms);

	pthread_mutex_lock(&srv->mu);
	while (!cond(srv))
		if (timeout_ms < 0)
			pthread_cond_wait(&srv->state_cv, &srv->mu);
		else if (pthread_cond_timedwait(&srv->state_cv, &srv->mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&srv->mu);
}

/* No call left to finish; connections may still be open. */
static bool
no_calls(struct server *srv)
{
	return srv->live_calls == 0 && srv->streams == 0 &&
	    srv->public_streams == 0;
}

static bool
drained(struct server *srv)
{
	return srv->shutdown_done && no_calls(srv);
}

void
server_reload(struct server *srv, struct auth *auth)
{
	struct auth *old = NULL;

	pthread_mutex_lock(&srv->auth_mu);
	if (auth != NULL) {
		old = srv->auth;
		srv->auth = auth_ref(auth);
	}
	pthread_mutex_unlock(&srv->auth_mu);
	auth_unref(old);
	if (srv->tls)
		atomic_store(&srv->tls_reload, true);
}

/* Frees a server that was bound but never started. */
void
server_discard(struct server *srv)
{
	if (srv == NULL)
		return;
	/* gRPC wants a server that has listeners shut down before it goes. */
	grpc_server_shutdown_and_notify(srv->gs, srv->cqs[0].cq, &srv->t_shutdown);
	while (grpc_completion_queue_next(srv->cqs[0].cq,
	    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).tag != &srv->t_shutdown)
		;
	grpc_server_destroy(srv->gs);
	for (int i = 0; i < srv->n_cq; i++) {
		grpc_completion_queue_shutdown(srv->cqs[i].cq);
		while (grpc_completion_queue_next(srv->cqs[i].cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
		    GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(srv->cqs[i].cq);
	}
	free(srv->cqs);
	free(srv->workers);
	free(srv->tls_cert);
	free(srv->tls_key);
	free(srv->tls_ca);
	auth_unref(srv->auth);
	denials_free(srv->denials);
	free(srv);
}

int
server_bind(struct server **out, const struct server_opts *opts,
    const struct rpc_method *methods, size_t n_methods, struct auth *auth)
{
	grpc_arg args[4];
	grpc_channel_args ch_args = { 4, args };
	grpc_resource_quota *quota;
	grpc_server_credentials *creds;
	struct server *srv;
	bool tls_ok;
	int port;

	*out = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return VAULT_ERR_NOMEM;
	/* The limits come from the settings table, defaults and bounds included. */
	if (denials_new(&srv->denials, opts->denial_audit_interval_s,
	    opts->auth_failures_per_peer) != 0) {
		free(srv);
		return VAULT_ERR_NOMEM;
	}
	srv->methods = methods;
	srv->n_methods = n_methods;
	srv->auth = auth_ref(auth);
	pthread_mutex_init(&srv->auth_mu, NULL);
	srv->grace_ms = opts->shutdown_grace_ms;
	srv->sink = opts->audit;
	srv->stats = opts->stats;
	srv->max_streams = opts->max_streams;
	srv->max_streams_per_principal = opts->max_streams_per_principal;
	srv->max_public_streams = opts->max_public_streams;
	srv->max_public_streams_per_peer = opts->max_public_streams_per_peer;
	srv->strings = opts->strings;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->state_cv, NULL);
	pthread_cond_init(&srv->sweep_cv, NULL);
	srv->max_pending = opts->max_pending_requests;
	srv->max_pending_per_peer = opts->max_pending_requests_per_peer;
	srv->request_timeout_ms = opts->request_timeout_ms;
	srv->t_shutdown = (struct tag){ .fn = on_shutdown, .srv = srv };

	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = opts->max_request_bytes;
	/* Two daemons on one port must fail, not share the traffic. */
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
	args[1].value.integer = 0;
	/*
	 * Every connection's buffers come out of one quota: under pressure the
	 * transport shrinks its flow-control windows instead of reading on, so
	 * oversized or slow requests cannot grow the process without bound.
	 */
	quota = grpc_resource_quota_create("vaultd");
	grpc_resource_quota_resize(quota, (size_t)opts->transport_memory_mb << 20);
	args[2].type = GRPC_ARG_POINTER;
	args[2].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
	args[2].value.pointer.p = quota;
	args[2].value.pointer.vtable = grpc_resource_quota_arg_vtable();
	/* Calls one connection may have open at once (HTTP/2 SETTINGS). */
	args[3].type = GRPC_ARG_INTEGER;
	args[3].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
	args[3].value.integer = MAX_CALLS_PER_CONNECTION;
	srv->gs = grpc_server_create(&ch_args, NULL);
	grpc_resource_quota_unref(quota);
	srv->n_cq = opts->cq_threads;
	srv->cqs = calloc((size_t)srv->n_cq, sizeof(*srv->cqs));
	srv->n_workers = opts->workers;
	srv->workers = calloc((size_t)srv->n_workers, sizeof(*srv->workers));
	if (srv->cqs == NULL || srv->workers == NULL) {
		grpc_server_destroy(srv->gs);
		free(srv->cqs);
		free(srv->workers);
		auth_unref(srv->auth);
		denials_free(srv->denials);
		free(srv);
		return VAULT_ERR_NOMEM;
	}
	for (int i = 0; i < srv->n_cq; i++) {
		srv->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
		srv->cqs[i].srv = srv;
		grpc_server_register_completion_queue(srv->gs, srv->cqs[i].cq, NULL);
	}
	creds = tls_credentials(srv, opts->tls_cert, opts->tls_key,
	    opts->tls_client_ca, opts->tls_require_client_cert);
	tls_ok = creds != NULL;
	port = tls_ok ? grpc_server_add_http2_port(srv->gs, opts->listen, creds) : 0;
	if (tls_ok)
		grpc_server_credentials_release(creds);
	if (port == 0) {
		/* The TLS files were read just before: their faults are logged. */
		log_error("cannot listen on %s (%s)", opts->listen, !tls_ok ?
		    "unusable TLS files, see above" : srv->tls ? "in use, not a "
		    "local address, or TLS files gRPC could not parse" : "in use, "
		    "or not a local address");
		server_discard(srv);
		return VAULT_ERR_IO;
	}
	srv->port = port;
	*out = srv;
	return 0;
}

void
server_run(struct server *srv, void *app)
{
	srv->app = app;
	grpc_server_start(srv->gs);
	for (int i = 0; i < srv->n_workers; i++) {
		srv->workers[i].srv = srv;
		pthread_cond_init(&srv->workers[i].cv, NULL);
		pthread_create(&srv->workers[i].thread, NULL, worker_main,
		    &srv->workers[i]);
	}
	for (int i = 0; i < srv->n_cq; i++)
		pthread_create(&srv->cqs[i].thread, NULL, cq_main, &srv->cqs[i]);
	if (pthread_create(&srv->sweeper, NULL, sweeper_main, srv) != 0) {
		/* Without it nothing times out: refuse to run like that. */
		log_error("cannot start the sweeper thread");
		abort();
	}
	log_info("listening on port %d, %s (%d completion queues, %d workers)",
	    srv->port, srv->tls ? "mTLS" : "plaintext", srv->n_cq,
	    srv->n_workers);
}

int
server_start(struct server **out, const struct server_opts *opts,
    const struct rpc_method *methods, size_t n_methods, void *app,
    struct auth *auth)
{
	int r;

	if ((r = server_bind(out, opts, methods, n_methods, auth)) != 0)
		return r;
	server_run(*out, app);
	return 0;
}

/*
 * The calls in flight get the grace period; idle connections get nothing.
 * gRPC's shutdown tag comes only once every connection has closed, and an
 * idle one closes only after its client answers the GOAWAY's ping and the
 * final GOAWAY is written (seconds with a few idle clients, the whole
 * grace with ten). Once no call is left, grpc_server_cancel_all_calls
 * sends each connection a GOAWAY and closes it at once. A call delivered
 * while the shutdown began counts as in flight again: the wait goes on.
 */
static void
stop_calls(struct server *srv)
{
	int64_t end = now_ms() + (srv->grace_ms < 0 ? 0 : srv->grace_ms);
	bool busy, done;
	int live;

	for (;;) {
		int64_t now = now_ms();

		wait_until(srv, no_calls, now < end ? (int)(end - now) : 0);
		/* A moment for the shutdown tag, or for a call delivered late. */
		wait_until(srv, drained, SHUTDOWN_IDLE_MS);
		pthread_mutex_lock(&srv->mu);
		busy = !no_calls(srv);
		done = srv->shutdown_done;
		live = srv->live_calls;
		pthread_mutex_unlock(&srv->mu);
		if (!busy || now_ms() >= end)
			break;
	}
	if (busy) {
		log_warn("grace period over: cancelling %d calls still running",
		    live);
		atomic_store(&srv->hard_cancel, true);
	}
	if (busy || !done)
		grpc_server_cancel_all_calls(srv->gs);
}

void
server_stop(struct server *srv)
{
	if (srv == NULL)
		return;
	atomic_store(&srv->stopping, true);
	grpc_server_shutdown_and_notify(srv->gs, srv->cqs[0].cq, &srv->t_shutdown);
	stop_calls(srv);
	wait_until(srv, drained, -1);

	/* The last denial summaries, while the audit log is open. */
	pthread_mutex_lock(&srv->mu);
	srv->sweeper_stop = true;
	pthread_cond_signal(&srv->sweep_cv);
	pthread_mutex_unlock(&srv->mu);
	pthread_join(srv->sweeper, NULL);
	pthread_mutex_lock(&srv->mu);
	srv->workers_stop = true;
	for (int i = 0; i < srv->n_workers; i++)
		pthread_cond_signal(&srv->workers[i].cv);
	pthread_mutex_unlock(&srv->mu);
	for (int i = 0; i < srv->n_workers; i++) {
		pthread_join(srv->workers[i].thread, NULL);
		pthread_cond_destroy(&srv->workers[i].cv);
	}
	grpc_server_destroy(srv->gs);
	for (int i = 0; i < srv->n_cq; i++)
		grpc_completion_queue_shutdown(srv->cqs[i].cq);
	for (int i = 0; i < srv->n_cq; i++) {
		pthread_join(srv->cqs[i].thread, NULL);
		grpc_completion_queue_destroy(srv->cqs[i].cq);
	}
	pthread_cond_destroy(&srv->state_cv);
	pthread_cond_destroy(&srv->sweep_cv);
	pthread_mutex_destroy(&srv->mu);
	pthread_mutex_destroy(&srv->auth_mu);
	auth_unref(srv->auth);
	denials_free(srv->denials);
	free(srv->tls_cert);
	free(srv->tls_key);
	free(srv->tls_ca);
	free(srv->cqs);
	free(srv->workers);
	free(srv);
}
