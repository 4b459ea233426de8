#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "put CONSUMER NAME=VALUE..."

int
cmd_put(struct ctl *ctl, int argc, char **argv)
{
	Vault__V1__PutAttributesRequest req = VAULT__V1__PUT_ATTRIBUTES_REQUEST__INIT;
	Vault__V1__PutAttributesResponse *resp = NULL;
	Vault__V1__Attribute *attrs = NULL, **ptrs = NULL;
	struct vc_status st;
	size_t n = (size_t)(argc > 2 ? argc - 2 : 0);
	int r;

	if (argc > 1 && strcmp(argv[1], "--") == 0) {
		argc--;		/* "--": what follows is CONSUMER, NAME=VALUE... */
		argv++;
		n = (size_t)(argc > 2 ? argc - 2 : 0);
	}
	if (argc < 3)
		return ctl_usage(USAGE);
	attrs = calloc(n, sizeof(*attrs));
	ptrs = calloc(n, sizeof(*ptrs));
	if (attrs == NULL || ptrs == NULL) {
		free(attrs);
		free(ptrs);
		return CTL_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		char *eq = strchr(argv[i + 2], '=');

		if (eq == NULL || eq == argv[i + 2]) {
			free(attrs);
			free(ptrs);
			fprintf(stderr, "vaultctl: argument %zu is not NAME=VALUE\n", i + 1);
			return ctl_usage(USAGE);
		}
		*eq = '\0';
		vault__v1__attribute__init(&attrs[i]);
		attrs[i].name = argv[i + 2];
		attrs[i].value = eq + 1;
		ptrs[i] = &attrs[i];
	}
	req.consumer_id = argv[1];
	req.n_attributes = n;
	req.attributes = ptrs;
	r = vc_unary(ctl->vc, "/vault.v1.Consumers/PutAttributes", &req.base,
	    &vault__v1__put_attributes_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms);
	free(attrs);
	free(ptrs);
	if (r != 0)
		return ctl_fail(ctl, &st);
	if (ctl->json) {
		json_t *o = json_pack("{s:s,s:b,s:i}", "consumer_ref",
		    resp->consumer_ref, "created", resp->created, "written",
		    (int)resp->written);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		printf("ok consumer_ref=%s written=%u%s\n", resp->consumer_ref,
		    resp->written, resp->created ? " created" : "");
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}
