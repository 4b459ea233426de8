/*
 * The audit report (AuditReport, vaultctl audit report): what a window of
 * the audit log shows, computed in one pass over it, with the store's
 * datasets, request records and deletion epochs.
 *
 * Per principal: entries, denials and distinct consumers touched. Per
 * dataset: FetchFeatures calls, and its lineage rows now. Deletions,
 * consent changes (GPC and ADMT opt-out signals among them), opt-out
 * request records, master key rotations and destructions.
 *
 * Anomalies: for each principal and UTC day of the window, the distinct
 * consumers it touched and its denials are compared with the mean of its
 * 7 days before (read from the log too); a day above factor x that mean
 * (and above factor x 1) is flagged, provided the principal was active on
 * at least one of those 7 days: a new principal has no baseline.
 */
#ifndef VAULT_REPORT_H
#define VAULT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vault.h"

#define REPORT_MAX_DAYS 366
#define REPORT_BASELINE_DAYS 7
#define REPORT_MAX_PRINCIPALS 1024
#define REPORT_MAX_DATASETS 4096
#define REPORT_MAX_KEY_EVENTS 1024
/* (principal, day, consumer) triples remembered: about 34 MB at most. */
#define REPORT_MAX_SEEN (1u << 20)

struct report_principal {
	char name[128];
	uint64_t entries, denials, distinct;
	/* Per day from the baseline's first: distinct consumers, denials. */
	uint64_t *day_distinct, *day_denials;
};

struct report_dataset {
	char id[80], purpose[64];
	uint64_t fetches, lineage_rows;
};

struct report_event {
	uint64_t at_ms;
	char principal[128], method[96], detail[256], outcome[48];
};

struct report_anomaly {
	size_t principal;		/* index into principals */
	uint64_t day_ms;
	const char *measure;		/* "distinct_consumers", "denials" */
	uint64_t value;
	double baseline;
};

struct report {
	uint64_t since_ms, until_ms;
	uint32_t factor;
	struct report_principal *principals;
	size_t n_principals;
	struct report_dataset *datasets;
	size_t n_datasets;
	uint64_t deletions, pending_final, consent_changes, gpc, admt_opt_outs,
	    opt_outs, consumer_rekeys;
	struct report_event *events;
	size_t n_events;
	struct report_anomaly *anomalies;
	size_t n_anomalies;
	bool truncated;			/* a cap above was reached */
};

/*
 * Computes the report of [since_ms, until_ms) (until - since at most
 * REPORT_MAX_DAYS days) into out; free it with report_free, also after
 * an error. One at a time: VAULT_ERR_LIMIT while another runs (each
 * reads the whole audit log).
 */
int report_build(struct vault *v, uint64_t since_ms, uint64_t until_ms,
    uint32_t factor, struct report *out) VAULT_WUR;
void report_free(struct report *r);

#endif
