/*
 * The text of one scrape (Prometheus exposition format 0.0.4): the call
 * counters of rpc/stats.h and the vault's state of engine/stats.h, with
 * their HELP and TYPE lines. metrics.h serves it.
 */
#ifndef VAULT_METRICS_TEXT_H
#define VAULT_METRICS_TEXT_H

#include <stddef.h>
#include <time.h>

#include "engine/stats.h"
#include "rpc/rpc.h"
#include "rpc/stats.h"

/* What a scrape reads besides the vault. */
struct metrics_source {
	const struct rpc_stats *rpc;	/* counts methods[0..n_methods) */
	const struct rpc_method *methods;
	size_t n_methods;
	const char *version;		/* vaultd's, for vaultd_build_info */
	int dek_refresh_ms;		/* see engine/stats.h */
};

struct metrics_scrape {
	const struct metrics_source *src;
	struct vault *v;
	struct vault_stats_cache *cache;
	time_t started;			/* wall clock */
	long long started_ms;		/* monotonic */
	double last_scrape_s;		/* the previous scrape's render time */
};

/*
 * Renders one scrape into *out (malloc'd: free it); returns its length, 0
 * when out of memory. *ok is 0 when the vault's state could not be read
 * (the rest is still there, and vaultd_metrics_scrape_ok says so).
 */
size_t metrics_text(const struct metrics_scrape *sc, int *ok, char **out);

#endif
