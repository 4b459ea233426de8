#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/replica.h"
#include "engine/stats.h"
#include "metrics_text.h"
#include "util/log.h"
#include "util/timeutil.h"

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
write_calls(FILE *f, const struct metrics_source *s)
{
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
write_traffic(FILE *f, const struct metrics_source *s)
{
	static const struct { const char *name, *help; } per[3] = {
		{ "vaultd_rpc_received_bytes_total", "Request message bytes received." },
		{ "vaultd_rpc_sent_bytes_total", "Response message bytes sent." },
		{ "vaultd_rpc_stream_messages_sent_total", "Messages sent on server streams." },
	};
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

/* Which replica on the store runs the upkeep (engine/replica.h). */
static void
write_lease(FILE *f, struct vault *v)
{
	help(f, "vaultd_maintenance_lease_held", "gauge",
	    "1 while this replica holds the maintenance lease (janitor, "
	    "rotation resumption, shred epochs).");
	fprintf(f, "vaultd_maintenance_lease_held %d\n",
	    replica_maintains(v->rep) ? 1 : 0);
	help(f, "vaultd_maintenance_lease_takeovers_total", "counter",
	    "Times this replica took the maintenance lease since start.");
	fprintf(f, "vaultd_maintenance_lease_takeovers_total %llu\n",
	    replica_takeovers(v->rep));
}

static void
write_keys(FILE *f, struct vault *v, const struct vault_stats *vs)
{
	const struct key_status *k = &vs->keys;
	uint32_t active = k->active;	/* the snapshot's (several replicas) */
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
	write_lease(f, v);
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
	gauge(f, "vaultd_audit_anomalies", "Anomalies the last audit report "
	    "flagged (AuditReport).", (double)vs->audit_anomalies);
	if (vs->drop_index_state != 0) {
		gauge(f, "vaultd_drop_index_built", "1 once the DROP index holds "
		    "every consumer stored before its identifiers were set; 0 "
		    "while the janitor builds it.", vs->drop_index_state == 2);
		gauge(f, "vaultd_drop_index_build_consumers", "Consumers the "
		    "DROP index's build indexed since start.",
		    (double)vs->drop_indexed);
	}
	gauge(f, "vaultd_drop_suppressed_writes", "Writes since start that "
	    "held an identifier deleted through DROP (the consumer opted out "
	    "of sale and sharing).", (double)vs->drop_suppressed);
	write_keys(f, v, vs);
}

/* The whole exposition; a malloc'd buffer in *out, or NULL. */

size_t
metrics_text(const struct metrics_scrape *sc, int *ok, char **out)
{
	struct vault_stats vs;
	size_t len = 0;
	FILE *f;
	int r;

	*out = NULL;
	*ok = 0;
	if ((f = open_memstream(out, &len)) == NULL)
		return 0;
	fprintf(f, "# HELP vaultd_build_info vaultd's version.\n"
	    "# TYPE vaultd_build_info gauge\n"
	    "vaultd_build_info{version=\"%s\"} 1\n", sc->src->version);
	gauge(f, "vaultd_start_time_seconds", "When vaultd started (Unix time).",
	    (double)sc->started);
	gauge(f, "vaultd_uptime_seconds", "Seconds since vaultd started.",
	    (double)(time_monotonic_ms() - sc->started_ms) / 1000.0);
	write_calls(f, sc->src);
	write_traffic(f, sc->src);
	if ((r = vault_stats_read(sc->v, sc->cache, &vs)) == 0)
		write_vault(f, sc->v, &vs);
	else
		log_warn("metrics: cannot read the vault's state: %s",
		    vault_strerror(r));
	vault_stats_clear(&vs);
	gauge(f, "vaultd_metrics_scrape_duration_seconds", "How long the "
	    "previous scrape took to render.", sc->last_scrape_s);
	gauge(f, "vaultd_metrics_scrape_ok", "0 when this scrape could not "
	    "read the vault's state (see the log).", r == 0);
	if (fclose(f) != 0) {
		free(*out);
		*out = NULL;
		return 0;
	}
	*ok = r == 0;
	return len;
}
