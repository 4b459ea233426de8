#include <stdio.h>

#include <jansson.h>

#include "grpc/health/v1/health.pb-c.h"
#include "vaultctl.h"

int
cmd_health(struct ctl *ctl, int argc, char **argv)
{
	Grpc__Health__V1__HealthCheckRequest req =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *resp = NULL;
	struct vc_status st;
	const char *status;
	int r;

	if (argc > 2)
		return ctl_usage("health [SERVICE]");
	if (argc == 2)
		req.service = argv[1];
	if (vc_unary(ctl->vc, "/grpc.health.v1.Health/Check", &req.base,
	    &grpc__health__v1__health_check_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	status = protobuf_c_enum_descriptor_get_value(
	    &grpc__health__v1__health_check_response__serving_status__descriptor,
	    (int)resp->status)->name;
	if (ctl->json) {
		json_t *o = json_pack("{s:s}", "status", status);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		printf("%s\n", status);
	}
	r = resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ?
	    CTL_OK : CTL_UNAVAILABLE;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}
