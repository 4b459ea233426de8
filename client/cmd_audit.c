#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "grpc/health/v1/health.pb-c.h"
#include "util/suggest.h"
#include "vault/v1/admin.pb-c.h"
#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "audit verify | audit query [--since T] [--until T] " \
	"[--principal P] [--consumer ID] [--method M] [--limit N] | " \
	"audit report [--since T] [--until T] [--factor N]"
/*
 * Without --limit, a query stops after this many entries and says so on
 * stderr: an unfiltered query of a busy vault is millions of lines, which
 * nobody means to page through at a terminal; --limit 0 asks for them all.
 */
#define DEFAULT_LIMIT 1000

struct query_state {
	uint64_t limit;		/* 0: none */
	uint64_t printed;
};

/* The services whose methods the audit log names. */
static const ProtobufCServiceDescriptor *const services[] = {
	&vault__v1__consumers__descriptor, &vault__v1__features__descriptor,
	&vault__v1__deletion__descriptor, &vault__v1__keys__descriptor,
	&vault__v1__audit__descriptor, &grpc__health__v1__health__descriptor,
	&vault__v1__admin__descriptor,
};
#define N_SERVICES (sizeof(services) / sizeof(services[0]))
#define MAX_METHODS 64

/*
 * --method as the audit log stores it, "/vault.v1.Keys/GetKeyStatus", from
 * that, "Keys/GetKeyStatus", "vault.v1.Keys/GetKeyStatus" or
 * "GetKeyStatus". An unknown short name is an error with the closest known
 * one: a typo must not silently match nothing. A full path ("/pkg.Svc/M")
 * goes as it is, for services newer than this vaultctl.
 */
static int
full_method(const char *in, char *out, size_t len)
{
	const char *names[MAX_METHODS], *close;
	char paths[MAX_METHODS][96];
	size_t n = 0;

	for (size_t i = 0; i < N_SERVICES; i++) {
		const ProtobufCServiceDescriptor *sd = services[i];
		const char *svc = strrchr(sd->name, '.') + 1;

		for (unsigned m = 0; m < sd->n_methods && n < MAX_METHODS; m++) {
			const char *method = sd->methods[m].name;
			char *path = paths[n];

			snprintf(path, sizeof(paths[n]), "/%s/%s", sd->name, method);
			names[n++] = method;
			if (strcmp(in, path) == 0 || strcmp(in, path + 1) == 0 ||
			    strcmp(in, method) == 0 ||
			    (strncmp(in, svc, strlen(svc)) == 0 &&
			    in[strlen(svc)] == '/' &&
			    strcmp(in + strlen(svc) + 1, method) == 0)) {
				snprintf(out, len, "%s", path);
				return 0;
			}
		}
	}
	if (in[0] == '/' && strchr(in + 1, '/') != NULL) {
		/* A full path of a service vaultctl was not built with. */
		snprintf(out, len, "%s", in);
		return 0;
	}
	close = suggest_closest(strrchr(in, '/') != NULL ? strrchr(in, '/') + 1 : in,
	    names, n);
	fprintf(stderr, "vaultctl: --method: unknown method '%s'", in);
	if (close != NULL)
		fprintf(stderr, "; did you mean '%s'?", close);
	fprintf(stderr, "\nmethods:");
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %s", names[i]);
	fputc('\n', stderr);
	return -1;
}

static int
time_arg(const char *opt, const char *s, int64_t *ms)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (ctl_parse_time(s, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
	    ms) == 0)
		return 0;
	fprintf(stderr, "vaultctl: %s: '%s' is not a time: give RFC 3339 "
	    "(2026-12-01, 2026-12-01T10:00:00Z, 2026-12-01T10:00:00+02:00), a "
	    "time back from now (30m, 24h, 7d) or epoch milliseconds\n", opt, s);
	return -1;
}

static int
on_entry(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__AuditEntry *e = (const void *)m;
	struct query_state *q = arg;
	char hash[2 * 32 + 1] = "";
	json_t *names = json_array(), *o;

	for (size_t i = 0; i < e->n_attribute_names; i++)
		json_array_append_new(names, json_string(e->attribute_names[i]));
	if (e->hash.len == 32)
		sodium_bin2hex(hash, sizeof(hash), e->hash.data, 32);
	o = json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s,s:s,s:s}",
	    "seq", (json_int_t)e->seq, "at_ms", (json_int_t)e->at_ms,
	    "principal", e->principal, "method", e->method, "kind", e->kind,
	    "consumer_ref", e->consumer_ref, "attribute_names", names,
	    "purpose", e->purpose, "dataset_id", e->dataset_id, "source",
	    e->source, "detail", e->detail, "outcome", e->outcome, "hash", hash);
	json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(o);
	q->printed++;
	return q->limit != 0 && q->printed >= q->limit;	/* cancels the stream */
}

static int
query(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "principal", required_argument, NULL, 'p' },
		{ "consumer", required_argument, NULL, 'c' },
		{ "method", required_argument, NULL, 'm' },
		{ "limit", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__QueryAuditRequest req = VAULT__V1__QUERY_AUDIT_REQUEST__INIT;
	struct query_state q = { DEFAULT_LIMIT, 0 };
	bool limit_given = false;
	char method[128];
	struct vc_status st;
	char *end;
	int ch;

	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 's':
			if (time_arg("--since", optarg, &req.since_ms) != 0)
				return CTL_USAGE;
			break;
		case 'u':
			if (time_arg("--until", optarg, &req.until_ms) != 0)
				return CTL_USAGE;
			break;
		case 'p': req.principal = optarg; break;
		case 'c': req.consumer_id = optarg; break;
		case 'm':
			if (full_method(optarg, method, sizeof(method)) != 0)
				return CTL_USAGE;
			req.method = method;
			break;
		case 'l':
			q.limit = strtoull(optarg, &end, 10);
			if (!isdigit((unsigned char)optarg[0]) || *end != '\0') {
				fprintf(stderr, "vaultctl: --limit wants a number "
				    "(0: no limit)\n");
				return CTL_USAGE;
			}
			limit_given = true;
			break;
		default: return ctl_usage(USAGE);
		}
	}
	if (optind != argc)
		return ctl_usage(USAGE);
	if (req.since_ms != 0 && req.until_ms != 0 && req.until_ms < req.since_ms) {
		fprintf(stderr, "vaultctl: --until is before --since\n");
		return CTL_USAGE;
	}
	vc_stream(ctl->vc, "/vault.v1.Audit/QueryAudit", &req.base,
	    &vault__v1__audit_entry__descriptor, on_entry, &q, &st,
	    ctl->timeout_ms);
	fflush(stdout);
	if (st.code == 1 /* CANCELLED */ && q.limit != 0 && q.printed >= q.limit) {
		if (!limit_given)
			fprintf(stderr, "vaultctl: stopped after %d entries, the "
			    "default limit; there may be more: --limit N for "
			    "more, --limit 0 for all\n", DEFAULT_LIMIT);
		return CTL_OK;
	}
	if (st.code != 0)
		return ctl_fail(ctl, &st);
	return CTL_OK;
}

static int
verify(struct ctl *ctl)
{
	Vault__V1__VerifyAuditRequest req = VAULT__V1__VERIFY_AUDIT_REQUEST__INIT;
	Vault__V1__VerifyAuditResponse *resp = NULL;
	char head[2 * 32 + 1] = "";
	struct vc_status st;
	int r;

	if (vc_unary(ctl->vc, "/vault.v1.Audit/VerifyAudit", &req.base,
	    &vault__v1__verify_audit_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (resp->head.len == 32)
		sodium_bin2hex(head, sizeof(head), resp->head.data, 32);
	if (ctl->json)
		printf("{\"ok\":%s,\"entries\":%" PRIu64 ",\"head\":\"%s\","
		    "\"first_bad_seq\":%" PRIu64 "}\n", resp->ok ? "true" : "false",
		    resp->entries, head, resp->first_bad_seq);
	else if (resp->ok)
		printf("audit log intact: %" PRIu64 " entries, head %s\n",
		    resp->entries, head);
	else
		printf("AUDIT LOG BROKEN at seq %" PRIu64 " (%" PRIu64 " entries "
		    "read)\n", resp->first_bad_seq, resp->entries);
	r = resp->ok ? CTL_OK : CTL_ERROR;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}

static json_t *
report_json(const Vault__V1__AuditReportResponse *r)
{
	json_t *ps = json_array(), *ds = json_array(), *ks = json_array(),
	    *as = json_array();
	const Vault__V1__VerifyAuditResponse *v = r->verification;
	char head[2 * 32 + 1] = "";

	for (size_t i = 0; i < r->n_principals; i++)
		json_array_append_new(ps, json_pack("{s:s,s:I,s:I,s:I}",
		    "principal", r->principals[i]->principal, "entries",
		    (json_int_t)r->principals[i]->entries, "denials",
		    (json_int_t)r->principals[i]->denials, "distinct_consumers",
		    (json_int_t)r->principals[i]->distinct_consumers));
	for (size_t i = 0; i < r->n_datasets; i++)
		json_array_append_new(ds, json_pack("{s:s,s:s,s:I,s:I}",
		    "dataset_id", r->datasets[i]->dataset_id, "purpose",
		    r->datasets[i]->purpose, "fetches",
		    (json_int_t)r->datasets[i]->fetches, "lineage_rows",
		    (json_int_t)r->datasets[i]->lineage_rows));
	for (size_t i = 0; i < r->n_key_events; i++)
		json_array_append_new(ks, json_pack("{s:I,s:s,s:s,s:s,s:s}",
		    "at_ms", (json_int_t)r->key_events[i]->at_ms, "principal",
		    r->key_events[i]->principal, "method",
		    r->key_events[i]->method, "detail", r->key_events[i]->detail,
		    "outcome", r->key_events[i]->outcome));
	for (size_t i = 0; i < r->n_anomalies; i++)
		json_array_append_new(as, json_pack("{s:s,s:I,s:s,s:I,s:f}",
		    "principal", r->anomalies[i]->principal, "day_ms",
		    (json_int_t)r->anomalies[i]->day_ms, "measure",
		    r->anomalies[i]->measure, "value",
		    (json_int_t)r->anomalies[i]->value, "baseline",
		    r->anomalies[i]->baseline));
	if (v != NULL && v->head.len == 32)
		sodium_bin2hex(head, sizeof(head), v->head.data, 32);
	return json_pack("{s:I,s:I,s:i,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:o,"
	    "s:I,s:{s:b,s:I,s:s,s:I,s:s%},s:o,s:b}",
	    "since_ms", (json_int_t)r->since_ms, "until_ms",
	    (json_int_t)r->until_ms, "anomaly_factor", (int)r->anomaly_factor,
	    "principals", ps, "datasets", ds, "deletions",
	    (json_int_t)r->deletions, "deletions_pending_final",
	    (json_int_t)r->deletions_pending_final, "consent_changes",
	    (json_int_t)r->consent_changes, "gpc_signals",
	    (json_int_t)r->gpc_signals, "admt_opt_outs",
	    (json_int_t)r->admt_opt_outs, "opt_outs", (json_int_t)r->opt_outs,
	    "key_events", ks, "consumer_key_rotations",
	    (json_int_t)r->consumer_key_rotations, "verification",
	    "ok", v != NULL && v->ok, "entries",
	    (json_int_t)(v != NULL ? v->entries : 0), "head", head,
	    "first_bad_seq", (json_int_t)(v != NULL ? v->first_bad_seq : 0),
	    "checkpoint", v != NULL ? (const char *)v->checkpoint.data : "",
	    v != NULL ? v->checkpoint.len : 0, "anomalies", as, "truncated",
	    r->truncated);
}

static void
report_text(const Vault__V1__AuditReportResponse *r)
{
	const Vault__V1__VerifyAuditResponse *v = r->verification;

	printf("audit report %" PRId64 "..%" PRId64 " (ms since the epoch)\n",
	    r->since_ms, r->until_ms);
	printf("principals:\n");
	for (size_t i = 0; i < r->n_principals; i++)
		printf("  %-24s entries %" PRIu64 ", denials %" PRIu64 ", "
		    "distinct consumers %" PRIu64 "\n",
		    r->principals[i]->principal, r->principals[i]->entries,
		    r->principals[i]->denials,
		    r->principals[i]->distinct_consumers);
	printf("datasets:\n");
	for (size_t i = 0; i < r->n_datasets; i++)
		printf("  %-24s purpose %s, fetches %" PRIu64 ", lineage rows "
		    "%" PRIu64 "\n", r->datasets[i]->dataset_id,
		    r->datasets[i]->purpose, r->datasets[i]->fetches,
		    r->datasets[i]->lineage_rows);
	printf("deletions %" PRIu64 " (not final yet, all time: %" PRIu64 ")\n"
	    "consent changes %" PRIu64 " (GPC %" PRIu64 ", ADMT opt-outs %"
	    PRIu64 "), opt-out requests %" PRIu64 "\n"
	    "consumer key rotations %" PRIu64 "\n", r->deletions,
	    r->deletions_pending_final, r->consent_changes, r->gpc_signals,
	    r->admt_opt_outs, r->opt_outs, r->consumer_key_rotations);
	printf("master key events:\n");
	for (size_t i = 0; i < r->n_key_events; i++)
		printf("  %" PRId64 " %s %s: %s (%s)\n", r->key_events[i]->at_ms,
		    r->key_events[i]->principal, r->key_events[i]->method,
		    r->key_events[i]->detail, r->key_events[i]->outcome);
	if (v != NULL)
		printf("audit chain: %s, %" PRIu64 " entries\n", v->ok ? "intact" :
		    "BROKEN", v->entries);
	if (r->truncated)
		printf("TRUNCATED: a cap was reached; lists are partial, "
		    "distinct counts lower bounds\n");
	printf("anomalies (factor %u):%s\n", r->anomaly_factor,
	    r->n_anomalies == 0 ? " none" : "");
	for (size_t i = 0; i < r->n_anomalies; i++)
		printf("  %s on day %" PRId64 ": %s %" PRIu64 " against a "
		    "baseline of %.1f\n", r->anomalies[i]->principal,
		    r->anomalies[i]->day_ms, r->anomalies[i]->measure,
		    r->anomalies[i]->value, r->anomalies[i]->baseline);
}

static int
report(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "factor", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__AuditReportRequest req = VAULT__V1__AUDIT_REPORT_REQUEST__INIT;
	Vault__V1__AuditReportResponse *resp = NULL;
	struct vc_status st;
	unsigned long f;
	char *end;
	int ch, r;

	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 's':
			if (time_arg("--since", optarg, &req.since_ms) != 0)
				return CTL_USAGE;
			break;
		case 'u':
			if (time_arg("--until", optarg, &req.until_ms) != 0)
				return CTL_USAGE;
			break;
		case 'f':
			f = strtoul(optarg, &end, 10);
			if (!isdigit((unsigned char)optarg[0]) || *end != '\0' ||
			    f < 2 || f > 1000) {
				fprintf(stderr, "vaultctl: --factor wants a number "
				    "from 2 to 1000\n");
				return CTL_USAGE;
			}
			req.anomaly_factor = (uint32_t)f;
			break;
		default: return ctl_usage(USAGE);
		}
	}
	if (optind != argc)
		return ctl_usage(USAGE);
	if (vc_unary(ctl->vc, "/vault.v1.Audit/AuditReport", &req.base,
	    &vault__v1__audit_report_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (ctl->json) {
		json_t *o = report_json(resp);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		report_text(resp);
	}
	r = resp->n_anomalies > 0 ? CTL_ANOMALY : CTL_OK;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}

int
cmd_audit(struct ctl *ctl, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "verify") == 0)
		return verify(ctl);
	if (argc >= 2 && strcmp(argv[1], "report") == 0)
		return report(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "query") == 0)
		return query(ctl, argc - 1, argv + 1);
	return ctl_usage(USAGE);
}
