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
	"[--principal P] [--consumer ID] [--method M] [--limit N]"
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

int
cmd_audit(struct ctl *ctl, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "verify") == 0)
		return verify(ctl);
	if (argc >= 2 && strcmp(argv[1], "query") == 0)
		return query(ctl, argc - 1, argv + 1);
	return ctl_usage(USAGE);
}
