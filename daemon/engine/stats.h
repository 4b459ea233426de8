/*
 * The vault's state for the metrics endpoint, read in one read transaction
 * per scrape: key versions and their pending final deletions, the rotation
 * under way, consumers and deletion-ledger events (entry counts the store
 * keeps: no scan), plus the writer's counters, the audit journal's backlog
 * and the data file's use.
 *
 * What a scrape costs does not grow with the vault, except for one thing:
 * how many DEKs each master version wraps is only known by reading every
 * consumer record (1M consumers: a full pass over the consumers space). So
 * those counts are cached, and counted again in the scrape's transaction
 * at most once every refresh_ms; between refreshes a scrape reports the
 * last counts and their age.
 */
#ifndef VAULT_ENGINE_STATS_H
#define VAULT_ENGINE_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/rotation.h"
#include "engine/vault.h"
#include "store/store.h"
#include "store/writer.h"

struct vault_stats {
	struct key_status keys;		/* deks[]: from the cache (below) */
	double deks_age_s;		/* how old keys.deks is */
	uint64_t consumers, ledger_events, audit_anomalies, drop_suppressed,
	    drop_indexed;
	int drop_index_state;		/* 0 no DROP identifiers, 1 building, 2 built */
	uint64_t journal_backlog;
	struct store_usage usage;
	struct writer_metrics writer;
	bool store_failed, audit_broken;
	int store_refusing;		/* store_refusing's last answer */
};

struct vault_stats_cache;

int vault_stats_cache_new(struct vault_stats_cache **out,
    int refresh_ms) VAULT_WUR;
void vault_stats_cache_free(struct vault_stats_cache *c);

/* Fills out (clear it with vault_stats_clear, also after an error). */
int vault_stats_read(struct vault *v, struct vault_stats_cache *c,
    struct vault_stats *out) VAULT_WUR;
void vault_stats_clear(struct vault_stats *s);

#endif
