#include <arpa/inet.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "devmode.h"
#include "engine/stats.h"
#include "metrics.h"
#include "util/log.h"
#include "util/timeutil.h"

/* Scrapers are few: a handful of connections, each bounded in time. */
#define MAX_CONNECTIONS 16
#define CONNECTION_TIMEOUT_S 10

struct metrics {
	struct MHD_Daemon *mhd;
	struct metrics_source src;
	_Atomic(struct vault *) v;
	struct vault_stats_cache *cache;
	time_t started;			/* wall clock, for the start time */
	long long started_ms;		/* monotonic, for the uptime */
	atomic_llong last_scrape_us;	/* how long the previous scrape took */
};

static void
help(FILE *f, const char *name, const char *type, const char *text)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* "/vault.v1.Consumers/PutAttributes" -> service, method labels. */
static void
method_labels(const char *path, char *out, size_t len)
{
	const char *slash = path != NULL ? strrchr(path, '/') : NULL;

	if (path == NULL || path[0] != '/' || slash == NULL || slash == path)
		snprintf(out, len, "service=\"unknown\",method=\"unknown\"");
	else
		snprintf(out, len, "service=\"%.*s\",method=\"%s\"",
		    (int)(slash - path - 1), path + 1, slash + 1);
}

static void
write_calls(FILE *f, const struct metrics *m)
{
	const struct metrics_source *s = &m->src;
	char lab[160];

	help(f, "vaultd_rpc_calls_total", "counter",
	    "Calls ended, by method and gRPC status code.");
	for (size_t i = 0; i <= s->n_methods; i++) {
		struct rpc_method_stats ms;

		rpc_stats_read(s->rpc, i, &ms);
		method_labels(i < s->n_methods ? s->methods[i].path : NULL, lab,
		    sizeof(lab));
		for (int c = 0; c < RPC_STATUS_CODES; c++)
			if (ms.calls[c] != 0 || c == 0)
				fprintf(f, "vaultd_rpc_calls_total{%s,code=\"%s\"} "
				    "%llu\n", lab, rpc_status_name(c),
				    (unsigned long long)ms.calls[c]);
	}
	help(f, "vaultd_rpc_duration_seconds", "histogram",
	    "Time from a call's arrival to its status (streams: their whole life).");
	for (size_t i = 0; i <= s->n_methods; i++) {
		struct rpc_method_stats ms;
		unsigned long long cum = 0;

		rpc_stats_read(s->rpc, i, &ms);
		method_labels(i < s->n_methods ? s->methods[i].path : NULL, lab,
		    sizeof(lab));
		for (int b = 0; b < RPC_LATENCY_BUCKETS; b++) {
			cum += ms.latency[b];
			fprintf(f, "vaultd_rpc_duration_seconds_bucket{%s,le=\"%g\"} "
			    "%llu\n", lab, rpc_latency_bounds_s[b], cum);
		}
		cum += ms.latency[RPC_LATENCY_BUCKETS];
		fprintf(f, "vaultd_rpc_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n"
		    "vaultd_rpc_duration_seconds_sum{%s} %.6f\n"
		    "vaultd_rpc_duration_seconds_count{%s} %llu\n", lab, cum, lab,
		    (double)ms.latency_sum_us / 1e6, lab, cum);
	}
}

static void
write_traffic(FILE *f, const struct metrics *m)
{
	static const struct { const char *name, *help; } per[3] = {
		{ "vaultd_rpc_received_bytes_total", "Request message bytes received." },
		{ "vaultd_rpc_sent_bytes_total", "Response message bytes sent." },
		{ "vaultd_rpc_stream_messages_sent_total", "Messages sent on server streams." },
	};
	const struct metrics_source *s = &m->src;
	char lab[160];

	for (int k = 0; k < 3; k++) {
		help(f, per[k].name, "counter", per[k].help);
		for (size_t i = 0; i <= s->n_methods; i++) {
			struct rpc_method_stats ms;
			uint64_t v;

			if (k == 2 && (i == s->n_methods ||
			    s->methods[i].kind != RPC_SERVER_STREAM))
				continue;
			rpc_stats_read(s->rpc, i, &ms);
			v = k == 0 ? ms.bytes_in : k == 1 ? ms.bytes_out : ms.msgs_sent;
			method_labels(i < s->n_methods ? s->methods[i].path : NULL,
			    lab, sizeof(lab));
			fprintf(f, "%s{%s} %llu\n", per[k].name, lab,
			    (unsigned long long)v);
		}
	}
	help(f, "vaultd_rpc_denied_total", "counter",
	    "Calls refused before their handler, by reason.");
	for (int d = 0; d < RPC_DENY_N; d++)
		fprintf(f, "vaultd_rpc_denied_total{reason=\"%s\"} %llu\n",
		    rpc_deny_name((enum rpc_deny)d), (unsigned long long)
		    rpc_stats_denials(s->rpc, (enum rpc_deny)d));
}

static void
write_writer(FILE *f, const struct writer_metrics *w)
{
	unsigned long long cum = 0;

	help(f, "vaultd_writer_group_size", "histogram",
	    "Write requests per group commit (_count: groups, _sum: requests).");
	for (unsigned b = 0; b < WRITER_GROUP_BUCKETS; b++) {
		cum += w->group_size[b];
		fprintf(f, "vaultd_writer_group_size_bucket{le=\"%u\"} %llu\n",
		    1u << b, cum);
	}
	cum += w->group_size[WRITER_GROUP_BUCKETS];
	fprintf(f, "vaultd_writer_group_size_bucket{le=\"+Inf\"} %llu\n"
	    "vaultd_writer_group_size_sum %llu\n"
	    "vaultd_writer_group_size_count %llu\n", cum, w->requests, cum);
	help(f, "vaultd_store_fsyncs_total", "counter",
	    "fsyncs of the data file: durable commits and lazy-commit flushes.");
	fprintf(f, "vaultd_store_fsyncs_total %llu\n", w->fsyncs);
}

static const char *
key_state(const struct key_version *kv, uint32_t active)
{
	if (kv->destroy_pending)
		return "destroying";
	if (kv->destroyed)
		return "destroyed";
	return kv->version == active ? "active" : "decrypt_only";
}

static void
write_keys(FILE *f, struct vault *v, const struct vault_stats *vs)
{
	const struct key_status *k = &vs->keys;
	uint32_t active = keyring_active_version(v->kr);
	uint64_t pending = 0;

	help(f, "vaultd_master_key_versions", "gauge",
	    "Master key versions the store has recorded, by state.");
	static const char *const states[] = { "active", "decrypt_only",
	    "destroying", "destroyed" };
	for (size_t s = 0; s < 4; s++) {
		unsigned n = 0;

		for (size_t i = 0; i < k->n; i++)
			n += strcmp(key_state(&k->vs[i], active), states[s]) == 0;
		fprintf(f, "vaultd_master_key_versions{state=\"%s\"} %u\n",
		    states[s], n);
	}
	help(f, "vaultd_master_key_deks", "gauge",
	    "Consumer DEKs each master key version wraps (counted at most "
	    "once per refresh; see _age_seconds).");
	for (size_t i = 0; i < k->n; i++)
		fprintf(f, "vaultd_master_key_deks{version=\"%u\",state=\"%s\"} "
		    "%llu\n", k->vs[i].version, key_state(&k->vs[i], active),
		    (unsigned long long)k->deks[i]);
	help(f, "vaultd_master_key_deks_age_seconds", "gauge",
	    "Age of the DEK counts.");
	fprintf(f, "vaultd_master_key_deks_age_seconds %.3f\n", vs->deks_age_s);
	help(f, "vaultd_deletions_pending_final", "gauge",
	    "Deletions not final yet (their master key version lives), by version.");
	for (size_t i = 0; i < k->n; i++) {
		pending += k->pending[i];
		if (k->pending[i] != 0)
			fprintf(f, "vaultd_deletions_pending_final{version=\"%u\"} "
			    "%llu\n", k->vs[i].version,
			    (unsigned long long)k->pending[i]);
	}
	help(f, "vaultd_deletions_pending_final_total", "gauge",
	    "Deletions not final yet, all versions.");
	fprintf(f, "vaultd_deletions_pending_final_total %llu\n",
	    (unsigned long long)pending);
	help(f, "vaultd_rotation_in_progress", "gauge",
	    "1 while a master key rotation runs.");
	fprintf(f, "vaultd_rotation_in_progress %d\n", k->rotating ? 1 : 0);
	help(f, "vaultd_rotation_target_version", "gauge",
	    "The version the running rotation rewraps to (0: none).");
	fprintf(f, "vaultd_rotation_target_version %u\n", k->rotating ?
	    k->p.target : 0);
	help(f, "vaultd_rotation_rewrapped", "gauge",
	    "DEKs the running rotation has rewrapped.");
	fprintf(f, "vaultd_rotation_rewrapped %llu\n", k->rotating ?
	    (unsigned long long)k->p.rewrapped : 0ULL);
	help(f, "vaultd_rotation_total", "gauge",
	    "DEKs the running rotation has to rewrap.");
	fprintf(f, "vaultd_rotation_total %llu\n", k->rotating ?
	    (unsigned long long)k->p.total : 0ULL);
}

static void
gauge(FILE *f, const char *name, const char *text, double value)
{
	help(f, name, "gauge", text);
	if (value == (double)(long long)value)
		fprintf(f, "%s %lld\n", name, (long long)value);
	else
		fprintf(f, "%s %.6f\n", name, value);
}

static void
write_vault(FILE *f, struct vault *v, const struct vault_stats *vs)
{
	const struct store_usage *u = &vs->usage;

	write_writer(f, &vs->writer);
	gauge(f, "vaultd_audit_journal_backlog", "Audit entries journaled, "
	    "not yet moved into the audit log.", (double)vs->journal_backlog);
	gauge(f, "vaultd_store_map_bytes", "The map size: the most the data "
	    "file may grow.", (double)u->map_bytes);
	gauge(f, "vaultd_store_file_bytes", "The data file's size.",
	    (double)u->file_bytes);
	gauge(f, "vaultd_store_used_bytes", "Pages up to the last one in use "
	    "(free pages below it included).", (double)u->used_bytes);
	gauge(f, "vaultd_store_map_used_ratio", "used_bytes / map_bytes.",
	    u->map_bytes > 0 ? (double)u->used_bytes / (double)u->map_bytes : 0);
	gauge(f, "vaultd_store_high_water_ratio", "Ordinary writes stop past "
	    "this share of the map (store_high_water_pct).",
	    u->high_water_pct / 100.0);
	gauge(f, "vaultd_store_refusing_writes", "1 while the store refuses "
	    "ordinary writes (past the high-water mark, or disk full).",
	    vs->store_refusing != 0);
	gauge(f, "vaultd_store_failed", "1 once a fatal store error stopped "
	    "every call.", vs->store_failed);
	gauge(f, "vaultd_audit_broken", "1 when the audit chain failed its "
	    "check at start.", vs->audit_broken);
	gauge(f, "vaultd_consumers", "Consumers in the store.",
	    (double)vs->consumers);
	gauge(f, "vaultd_deletion_ledger_events", "Deletion events in the "
	    "ledger (not yet expired).", (double)vs->ledger_events);
	write_keys(f, v, vs);
}

/* The whole exposition; a malloc'd buffer in *out, or NULL. */
static size_t
render(struct metrics *m, struct vault *v, char **out)
{
	long long t0 = time_monotonic_ms();
	struct timespec a, b;
	struct vault_stats vs;
	size_t len = 0;
	FILE *f;
	int r;

	*out = NULL;
	clock_gettime(CLOCK_MONOTONIC, &a);
	if ((f = open_memstream(out, &len)) == NULL)
		return 0;
	fprintf(f, "# HELP vaultd_build_info vaultd's version.\n"
	    "# TYPE vaultd_build_info gauge\n"
	    "vaultd_build_info{version=\"%s\"} 1\n", m->src.version);
	gauge(f, "vaultd_start_time_seconds", "When vaultd started (Unix time).",
	    (double)m->started);
	gauge(f, "vaultd_uptime_seconds", "Seconds since vaultd started.",
	    (double)(t0 - m->started_ms) / 1000.0);
	write_calls(f, m);
	write_traffic(f, m);
	if ((r = vault_stats_read(v, m->cache, &vs)) == 0)
		write_vault(f, v, &vs);
	else
		log_warn("metrics: cannot read the vault's state: %s",
		    vault_strerror(r));
	vault_stats_clear(&vs);
	gauge(f, "vaultd_metrics_scrape_duration_seconds", "How long the "
	    "previous scrape took to render.",
	    (double)atomic_load(&m->last_scrape_us) / 1e6);
	gauge(f, "vaultd_metrics_scrape_ok", "0 when this scrape could not "
	    "read the vault's state (see the log).", r == 0);
	if (fclose(f) != 0) {
		free(*out);
		*out = NULL;
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	atomic_store(&m->last_scrape_us, (b.tv_sec - a.tv_sec) * 1000000LL +
	    (b.tv_nsec - a.tv_nsec) / 1000);
	return len;
}

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *type,
    char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if ((resp = MHD_create_response_from_buffer(len, body, mode)) == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_size, void **state)
{
	static const char plain[] = "text/plain; charset=utf-8";
	struct metrics *m = cls;
	struct vault *v;
	char *body;
	size_t len;

	(void)version;
	(void)upload_data;
	/* The first call only announces the request: answer on the second. */
	if (*state == NULL) {
		*state = m;
		return MHD_YES;
	}
	if (*upload_size != 0) {	/* a body is read and ignored */
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, plain,
		    (char *)"not found; try /metrics\n", 24, MHD_RESPMEM_PERSISTENT);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, plain,
		    (char *)"GET only\n", 9, MHD_RESPMEM_PERSISTENT);
	if ((v = atomic_load(&m->v)) == NULL)
		return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, plain,
		    (char *)"starting\n", 9, MHD_RESPMEM_PERSISTENT);
	if ((len = render(m, v, &body)) == 0 || body == NULL)
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, plain,
		    (char *)"out of memory\n", 14, MHD_RESPMEM_PERSISTENT);
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; "
	    "charset=utf-8", body, len, MHD_RESPMEM_MUST_FREE);
}

/* MHD's own complaints (a connection it could not accept) go to our log. */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("metrics: %s", msg);
}

/* "host:port" -> one address; the last colon splits ("[::1]:9464" too). */
static int
resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	    .ai_socktype = SOCK_STREAM }, *res = NULL;
	const char *colon = strrchr(listen, ':');
	char host[256];
	size_t hl;

	if (colon == NULL || colon == listen || colon[1] == '\0' ||
	    (hl = (size_t)(colon - listen)) >= sizeof(host))
		return VAULT_ERR_INVALID;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL)
		return VAULT_ERR_INVALID;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sl = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void
bound_address(struct metrics *m, const struct sockaddr_storage *ss,
    char *out, size_t len)
{
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = di != NULL ? di->port : 0;

	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
		    host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, port);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    host, sizeof(host));
		snprintf(out, len, "%s:%u", host, port);
	}
}

int
metrics_start(struct metrics **out, const char *listen,
    const struct metrics_source *src, char *bound, size_t len)
{
	struct sockaddr_storage ss;
	struct metrics *m;
	socklen_t sl;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int r;

	*out = NULL;
	if ((r = resolve(listen, &ss, &sl)) != 0) {
		log_error("metrics_listen %s: not a host:port address", listen);
		return r;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return VAULT_ERR_NOMEM;
	m->src = *src;
	m->started = time(NULL);
	m->started_ms = time_monotonic_ms();
	if ((r = vault_stats_cache_new(&m->cache, src->dek_refresh_ms)) != 0) {
		free(m);
		return r;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	(void)sl;
	m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
	    MHD_OPTION_END);
	if (m->mhd == NULL) {
		log_error("cannot serve metrics on %s (in use, or not a local "
		    "address)", listen);
		vault_stats_cache_free(m->cache);
		free(m);
		return VAULT_ERR_IO;
	}
	bound_address(m, &ss, bound, len);
	*out = m;
	return 0;
}

void
metrics_attach(struct metrics *m, struct vault *v)
{
	if (m != NULL)
		atomic_store(&m->v, v);
}

void
metrics_stop(struct metrics *m)
{
	if (m == NULL)
		return;
	MHD_stop_daemon(m->mhd);
	vault_stats_cache_free(m->cache);
	free(m);
}

int
metrics_start_configured(struct metrics **out, const struct config *cfg,
    bool dev, const struct metrics_source *src)
{
	const char *addr = cfg->metrics_listen;
	bool dev_default = false;
	char bound[128];
	int r;

	*out = NULL;
	if (addr == NULL && dev) {
		addr = DEVMODE_METRICS_LISTEN;
		dev_default = true;
	}
	if (addr == NULL || addr[0] == '\0' || strcmp(addr, "off") == 0) {
		log_info("metrics: off (set metrics_listen to serve them)");
		return 0;
	}
	if ((r = metrics_start(out, addr, src, bound, sizeof(bound))) != 0) {
		if (!dev_default)
			return r;
		log_warn("metrics: off: dev mode's default address %s is taken "
		    "(set metrics_listen, or --metrics-listen)", addr);
		return 0;
	}
	log_info("metrics: Prometheus text on http://%s/metrics", bound);
	return 0;
}
