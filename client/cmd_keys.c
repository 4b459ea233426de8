#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "keys status | keys rotate [VERSION] | keys destroy VERSION " \
	"[--yes] | keys rekey CONSUMER"

static int
status(struct ctl *ctl)
{
	Vault__V1__GetKeyStatusRequest req = VAULT__V1__GET_KEY_STATUS_REQUEST__INIT;
	Vault__V1__GetKeyStatusResponse *resp = NULL;
	char pk[2 * 32 + 1] = "";
	struct vc_status st;

	if (vc_unary(ctl->vc, "/vault.v1.Keys/GetKeyStatus", &req.base,
	    &vault__v1__get_key_status_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (resp->receipt_public_key.len == 32)
		sodium_bin2hex(pk, sizeof(pk), resp->receipt_public_key.data, 32);
	if (ctl->json) {
		json_t *vs = json_array(), *o;

		for (size_t i = 0; i < resp->n_versions; i++) {
			Vault__V1__KeyVersion *k = resp->versions[i];

			json_array_append_new(vs, json_pack("{s:i,s:s,s:s,s:I,s:I,s:I}",
			    "version", (int)k->version, "id", k->id, "state", k->state,
			    "dek_count", (json_int_t)k->dek_count, "created_at_ms",
			    (json_int_t)k->created_at_ms, "pending_final_deletions",
			    (json_int_t)k->pending_final_deletions));
		}
		o = json_pack("{s:i,s:o,s:b,s:s}", "active_version",
		    (int)resp->active_version, "versions", vs, "rotation_in_progress",
		    resp->rotation_in_progress, "receipt_public_key", pk);
		if (resp->rotation != NULL)
			json_object_set_new(o, "rotation", json_pack("{s:I,s:I,s:i}",
			    "rewrapped", (json_int_t)resp->rotation->rewrapped, "total",
			    (json_int_t)resp->rotation->total, "new_version",
			    (int)resp->rotation->new_version));
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		printf("active version: %u\nreceipt public key: %s\n",
		    resp->active_version, pk);
		printf("%-8s %-13s %10s %16s\n", "version", "state", "DEKs",
		    "pending-final");
		for (size_t i = 0; i < resp->n_versions; i++)
			printf("%-8u %-13s %10" PRIu64 " %16" PRIu64 "\n",
			    resp->versions[i]->version, resp->versions[i]->state,
			    resp->versions[i]->dek_count,
			    resp->versions[i]->pending_final_deletions);
		if (resp->rotation != NULL)
			printf("rotation to version %u: %" PRIu64 " of %" PRIu64 "\n",
			    resp->rotation->new_version, resp->rotation->rewrapped,
			    resp->rotation->total);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}

struct rotate_state {
	const struct ctl *ctl;
	bool bar;
	uint32_t version;
	uint64_t rewrapped;
};

static int
on_progress(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__RotationProgress *p = (const void *)m;
	struct rotate_state *s = arg;

	s->version = p->new_version;
	s->rewrapped = p->rewrapped;
	if (s->ctl->json) {
		printf("{\"new_version\":%u,\"rewrapped\":%" PRIu64 ",\"total\":%"
		    PRIu64 ",\"done\":%s}\n", p->new_version, p->rewrapped, p->total,
		    p->done ? "true" : "false");
	} else if (s->bar) {
		int width = 40, fill = p->total ? (int)(p->rewrapped * (uint64_t)width /
		    p->total) : width;

		fprintf(stderr, "\rrewrapping under version %u [%-*.*s] %" PRIu64
		    "/%" PRIu64, p->new_version, width, fill > width ? width : fill,
		    "########################################", p->rewrapped,
		    p->total);
	}
	return 0;
}

static int
rotate(struct ctl *ctl, const char *version)
{
	Vault__V1__RotateMasterKeyRequest req = VAULT__V1__ROTATE_MASTER_KEY_REQUEST__INIT;
	struct rotate_state s = { ctl, isatty(2) != 0, 0, 0 };
	struct vc_status st;

	req.new_key_id = (char *)(version != NULL ? version : "");
	vc_stream(ctl->vc, "/vault.v1.Keys/RotateMasterKey", &req.base,
	    &vault__v1__rotation_progress__descriptor, on_progress, &s, &st, 0);
	if (s.bar)
		fputc('\n', stderr);
	if (st.code != 0)
		return ctl_fail(ctl, &st);
	if (!ctl->json)
		printf("master key version %u is active; %" PRIu64 " DEKs rewrapped\n",
		    s.version, s.rewrapped);
	return CTL_OK;
}

/*
 * Destroying a version cannot be undone, so a person types the version to
 * go on; a script says --yes. Without a terminal to ask on and without
 * --yes, nothing is destroyed.
 */
static bool
destroy_confirmed(const char *version, bool yes)
{
	char prompt[256];

	if (yes)
		return true;
	if (!isatty(0)) {
		fprintf(stderr, "vaultctl: keys destroy cannot be undone; stdin is "
		    "not a terminal to confirm on: add --yes\n");
		return false;
	}
	snprintf(prompt, sizeof(prompt), "Destroying master key version %s "
	    "cannot be undone: whatever only it can open is gone for good.\n"
	    "Type the version (%s) to destroy it: ", version, version);
	if (ctl_confirm(prompt, version))
		return true;
	fprintf(stderr, "vaultctl: not confirmed; nothing was destroyed\n");
	return false;
}

static int
destroy(struct ctl *ctl, const char *version, bool yes)
{
	Vault__V1__DestroyMasterKeyRequest req = VAULT__V1__DESTROY_MASTER_KEY_REQUEST__INIT;
	Vault__V1__DestroyMasterKeyResponse *resp = NULL;
	struct vc_status st;
	unsigned long v;
	char *end;

	v = strtoul(version, &end, 10);
	if (!isdigit((unsigned char)version[0]) || *end != '\0' || v == 0 ||
	    v > UINT32_MAX)
		return ctl_usage(USAGE);
	req.version = (uint32_t)v;
	if (!destroy_confirmed(version, yes))
		return CTL_USAGE;
	if (vc_unary(ctl->vc, "/vault.v1.Keys/DestroyMasterKey", &req.base,
	    &vault__v1__destroy_master_key_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (ctl->json)
		printf("{\"version\":%u,\"destroyed_at_ms\":%" PRId64 "}\n",
		    resp->version, resp->destroyed_at_ms);
	else
		printf("master key version %u destroyed at %" PRId64 "\n",
		    resp->version, resp->destroyed_at_ms);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}

static int
rekey(struct ctl *ctl, const char *consumer)
{
	Vault__V1__RotateConsumerKeyRequest req = VAULT__V1__ROTATE_CONSUMER_KEY_REQUEST__INIT;
	Vault__V1__RotateConsumerKeyResponse *resp = NULL;
	struct vc_status st;

	req.consumer_id = (char *)consumer;
	if (vc_unary(ctl->vc, "/vault.v1.Keys/RotateConsumerKey", &req.base,
	    &vault__v1__rotate_consumer_key_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	printf(ctl->json ? "{\"consumer_ref\":\"%s\",\"dek_generation\":%u}\n" :
	    "consumer_ref=%s dek_generation=%u\n", resp->consumer_ref,
	    resp->dek_generation);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}

int
cmd_keys(struct ctl *ctl, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "status") == 0)
		return status(ctl);
	if ((argc == 2 || argc == 3) && strcmp(argv[1], "rotate") == 0)
		return rotate(ctl, argc == 3 ? argv[2] : NULL);
	if (argc >= 3 && argc <= 4 && strcmp(argv[1], "destroy") == 0) {
		bool yes = argc == 4 && (strcmp(argv[2], "--yes") == 0 ||
		    strcmp(argv[3], "--yes") == 0);
		const char *version = argc == 3 || strcmp(argv[2], "--yes") != 0 ?
		    argv[2] : argv[3];

		if (argc == 4 && !yes)
			return ctl_usage(USAGE);
		if (strcmp(version, "--yes") == 0)
			return ctl_usage(USAGE);
		return destroy(ctl, version, yes);
	}
	if (argc == 3 && strcmp(argv[1], "rekey") == 0)
		return rekey(ctl, argv[2]);
	return ctl_usage(USAGE);
}
