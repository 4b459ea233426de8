#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "audit verify | audit query [--since MS] [--until MS] " \
	"[--principal P] [--consumer ID] [--method PATH]"

static int
on_entry(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__AuditEntry *e = (const void *)m;
	char hash[2 * 32 + 1] = "";
	json_t *names = json_array(), *o;

	(void)arg;
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
	return 0;
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
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__QueryAuditRequest req = VAULT__V1__QUERY_AUDIT_REQUEST__INIT;
	struct vc_status st;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': req.since_ms = strtoll(optarg, NULL, 10); break;
		case 'u': req.until_ms = strtoll(optarg, NULL, 10); break;
		case 'p': req.principal = optarg; break;
		case 'c': req.consumer_id = optarg; break;
		case 'm': req.method = optarg; break;
		default: return ctl_usage(USAGE);
		}
	}
	if (optind != argc)
		return ctl_usage(USAGE);
	if (vc_stream(ctl->vc, "/vault.v1.Audit/QueryAudit", &req.base,
	    &vault__v1__audit_entry__descriptor, on_entry, NULL, &st,
	    ctl->timeout_ms) != 0)
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
