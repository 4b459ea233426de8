#include <getopt.h>
#include <stdio.h>

#include <jansson.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "get CONSUMER [NAME...] [--purpose P (default service)]"

static void
print_json(const Vault__V1__GetAttributesResponse *resp)
{
	json_t *o = json_object(), *a = json_object();

	for (size_t i = 0; i < resp->n_attributes; i++)
		json_object_set_new(a, resp->attributes[i]->name,
		    json_string(resp->attributes[i]->value));
	json_object_set_new(o, "consumer_ref", json_string(resp->consumer_ref));
	json_object_set_new(o, "attributes", a);
	json_dumpf(o, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(o);
}

int
cmd_get(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "purpose", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__GetAttributesRequest req = VAULT__V1__GET_ATTRIBUTES_REQUEST__INIT;
	Vault__V1__GetAttributesResponse *resp = NULL;
	struct vc_status st;
	int ch;

	req.purpose = "service";
	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		if (ch != 'p')
			return ctl_usage(USAGE);
		req.purpose = optarg;
	}
	if (optind >= argc)
		return ctl_usage(USAGE);
	req.consumer_id = argv[optind];
	req.names = argv + optind + 1;
	req.n_names = (size_t)(argc - optind - 1);
	if (vc_unary(ctl->vc, "/vault.v1.Consumers/GetAttributes", &req.base,
	    &vault__v1__get_attributes_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (ctl->json)
		print_json(resp);
	else
		for (size_t i = 0; i < resp->n_attributes; i++)
			printf("%s=%s\n", resp->attributes[i]->name,
			    resp->attributes[i]->value);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}
