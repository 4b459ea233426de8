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
#include "metrics_text.h"
#include "util/log.h"
#include "util/timeutil.h"

/* Scrapers are few: a handful of connections, each bounded in time. */
#define MAX_CONNECTIONS 16
#define CONNECTION_TIMEOUT_S 10
/*
 * Per client address: a scraper needs one; a host trickling half-sent
 * requests (each resets the idle timeout) would otherwise hold all
 * MAX_CONNECTIONS and blind monitoring.
 */
#define MAX_CONNECTIONS_PER_IP 4

struct metrics {
	struct MHD_Daemon *mhd;
	struct metrics_source src;
	_Atomic(struct vault *) v;
	struct vault_stats_cache *cache;
	time_t started;			/* wall clock, for the start time */
	long long started_ms;		/* monotonic, for the uptime */
	atomic_llong last_scrape_us;	/* how long the previous scrape took */
};

/* One scrape's text, timed for the next scrape to report. */
static size_t
render(struct metrics *m, struct vault *v, char **out)
{
	struct metrics_scrape sc = { .src = &m->src, .v = v, .cache = m->cache,
	    .started = m->started, .started_ms = m->started_ms,
	    .last_scrape_s = (double)atomic_load(&m->last_scrape_us) / 1e6 };
	struct timespec a, b;
	size_t len;
	int ok;

	clock_gettime(CLOCK_MONOTONIC, &a);
	len = metrics_text(&sc, &ok, out);
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
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS_PER_IP,
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
