#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include <jansson.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "delete CONSUMER [--request-id ID]"

int
cmd_delete(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "request-id", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__DeleteConsumerRequest req = VAULT__V1__DELETE_CONSUMER_REQUEST__INIT;
	Vault__V1__DeletionReceipt *resp = NULL;
	struct vc_status st;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch != 'r')
			return ctl_usage(USAGE);
		req.request_id = optarg;
	}
	if (optind != argc - 1)
		return ctl_usage(USAGE);
	req.consumer_id = argv[optind];
	if (vc_unary(ctl->vc, "/vault.v1.Deletion/DeleteConsumer", &req.base,
	    &vault__v1__deletion_receipt__descriptor, (ProtobufCMessage **)&resp,
	    &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (ctl->json) {
		json_t *o = json_pack("{s:s,s:s,s:b,s:I,s:i}", "request_id",
		    resp->request_id, "consumer_ref", resp->consumer_ref, "found",
		    resp->found, "deleted_at_ms", (json_int_t)resp->deleted_at_ms,
		    "epoch", (int)resp->epoch);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		printf("request_id=%s\nconsumer_ref=%s\nfound=%s\ndeleted_at_ms=%"
		    PRId64 "\nepoch=%u\n", resp->request_id, resp->consumer_ref,
		    resp->found ? "true" : "false", resp->deleted_at_ms, resp->epoch);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}
