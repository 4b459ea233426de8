/*
 * The metrics endpoint: Prometheus text format (version 0.0.4) over plain
 * HTTP on its own address (metrics_listen), served by libmicrohttpd on one
 * thread of its own. GET /metrics; anything else is 404 (405 for another
 * method on /metrics).
 *
 * It only reads: the RPC runtime's call counters (rpc/stats.h), and the
 * vault's state in one read transaction per scrape (engine/stats.h). No
 * label carries a consumer id, a value, a token, a principal or a peer
 * address: methods come from the dispatch table (others are "unknown"),
 * status codes and denial reasons from fixed lists, key versions are
 * numbers. There is no authentication: bind it to loopback or a private
 * interface (docs/operations.md).
 */
#ifndef VAULT_METRICS_H
#define VAULT_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"

#include "engine/vault.h"
#include "metrics_text.h"
#include "util/vault_err.h"

struct metrics;

/*
 * Binds listen ("host:port"; port 0 picks one) and serves; until
 * metrics_attach, a scrape gets 503. The address bound goes to bound
 * ("host:port", len bytes). VAULT_ERR_IO when the address cannot be
 * bound (the reason is logged).
 */
int metrics_start(struct metrics **out, const char *listen,
    const struct metrics_source *src, char *bound, size_t len) VAULT_WUR;
/*
 * Starts the endpoint the configuration asks for, and logs where it is:
 * cfg->metrics_listen (NULL, "" or "off": none), or in dev mode, when the
 * setting is absent, DEVMODE_METRICS_LISTEN on loopback. An address that
 * cannot be bound refuses the start, except dev mode's default (taken by
 * another dev vault, say): then a warning, and no endpoint. *out stays
 * NULL when there is none.
 */
int metrics_start_configured(struct metrics **out, const struct config *cfg,
    bool dev, const struct metrics_source *src) VAULT_WUR;

/* From now on scrapes read v; v must outlive metrics_stop. */
void metrics_attach(struct metrics *m, struct vault *v);
/* Stops serving and frees m. NULL-safe. */
void metrics_stop(struct metrics *m);

#endif
