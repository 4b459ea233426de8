#include <stdio.h>

#include <jansson.h>

#include "vaultctl.h"

static int
exit_code(int grpc_code)
{
	switch (grpc_code) {
	case 0: return CTL_OK;
	case 5: return CTL_NOT_FOUND;			/* NOT_FOUND */
	case 3: return CTL_INVALID;			/* INVALID_ARGUMENT */
	case 7: case 16: return CTL_DENIED;		/* PERMISSION_DENIED, UNAUTHENTICATED */
	case 4: case 14: return CTL_UNAVAILABLE;	/* DEADLINE_EXCEEDED, UNAVAILABLE */
	default: return CTL_ERROR;
	}
}

int
ctl_fail(const struct ctl *ctl, const struct vc_status *st)
{
	if (ctl->json) {
		json_t *o = json_pack("{s:{s:s,s:i,s:s}}", "error", "code",
		    vc_code_name(st->code), "grpc_code", st->code, "message",
		    st->message);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	}
	fprintf(stderr, "vaultctl: %s: %s\n", vc_code_name(st->code), st->message);
	return exit_code(st->code);
}

int
ctl_usage(const char *usage)
{
	fprintf(stderr, "usage: vaultctl [global options] %s\n", usage);
	return CTL_USAGE;
}
