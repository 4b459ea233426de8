#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "delete (CONSUMER [--request-id ID] | CONSUMER... | --from-file F)"
#define MAX_BATCH 1000

static char *
b64(const ProtobufCBinaryData *d)
{
	size_t n = sodium_base64_ENCODED_LEN(d->len, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(n);

	if (s != NULL)
		sodium_bin2base64(s, n, d->data, d->len, sodium_base64_VARIANT_ORIGINAL);
	return s;
}

/*
 * A receipt as JSON: every signed field (receipt verify wants them all),
 * final_at_ms, and the signed bytes with their signature.
 */
static json_t *
ctl_receipt_json(const Vault__V1__DeletionReceipt *r)
{
	json_t *ds = json_array();
	char *sb = b64(&r->signed_bytes), *sig = b64(&r->signature);
	json_t *o;

	for (size_t i = 0; i < r->n_affected_datasets; i++)
		json_array_append_new(ds, json_string(r->affected_datasets[i]));
	o = json_pack("{s:s,s:s,s:b,s:I,s:I,s:o,s:s,s:I,s:s,s:s}", "request_id",
	    r->request_id, "consumer_ref", r->consumer_ref, "found", r->found,
	    "deleted_at_ms", (json_int_t)r->deleted_at_ms, "epoch",
	    (json_int_t)r->epoch, "affected_datasets", ds, "audit_head",
	    r->audit_head, "final_at_ms", (json_int_t)r->final_at_ms,
	    "signed_bytes", sb ? sb : "", "signature", sig ? sig : "");
	free(sb);
	free(sig);
	return o;
}

static void
print_receipt(const struct ctl *ctl, const Vault__V1__DeletionReceipt *r)
{
	if (ctl->json) {
		json_t *o = ctl_receipt_json(r);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
		return;
	}
	printf("request_id=%s consumer_ref=%s found=%s deleted_at_ms=%" PRId64
	    " epoch=%u final_at_ms=%" PRId64 " datasets=%zu\n", r->request_id,
	    r->consumer_ref, r->found ? "true" : "false", r->deleted_at_ms,
	    r->epoch, r->final_at_ms, r->n_affected_datasets);
}

/* Reads consumer ids, one a line, into ids (at most MAX_BATCH). */
static size_t
read_ids(const char *path, char **ids, int *err)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char line[1100];
	size_t n = 0;

	*err = 0;
	if (f == NULL) {
		fprintf(stderr, "vaultctl: cannot read %s\n", path);
		*err = 1;
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (n == MAX_BATCH) {
			fprintf(stderr, "vaultctl: at most %d ids per call\n", MAX_BATCH);
			*err = 1;
			break;
		}
		ids[n++] = strdup(line);
	}
	if (f != stdin)
		fclose(f);
	return n;
}

static int
delete_many(struct ctl *ctl, char **ids, size_t n)
{
	Vault__V1__DeleteConsumersRequest req = VAULT__V1__DELETE_CONSUMERS_REQUEST__INIT;
	Vault__V1__DeleteConsumerRequest *items = calloc(n, sizeof(*items));
	Vault__V1__DeleteConsumerRequest **ptrs = calloc(n, sizeof(*ptrs));
	Vault__V1__DeleteConsumersResponse *resp = NULL;
	struct vc_status st;
	int r;

	if (items == NULL || ptrs == NULL) {
		free(items);
		free(ptrs);
		return CTL_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		vault__v1__delete_consumer_request__init(&items[i]);
		items[i].consumer_id = ids[i];
		ptrs[i] = &items[i];
	}
	req.n_requests = n;
	req.requests = ptrs;
	r = vc_unary(ctl->vc, "/vault.v1.Deletion/DeleteConsumers", &req.base,
	    &vault__v1__delete_consumers_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms);
	free(items);
	free(ptrs);
	if (r != 0)
		return ctl_fail(ctl, &st);
	for (size_t i = 0; i < resp->n_receipts; i++)
		print_receipt(ctl, resp->receipts[i]);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}

int
cmd_delete(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "request-id", required_argument, NULL, 'r' },
		{ "from-file", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__DeleteConsumerRequest req = VAULT__V1__DELETE_CONSUMER_REQUEST__INIT;
	Vault__V1__DeletionReceipt *resp = NULL;
	const char *from = NULL;
	struct vc_status st;
	int ch, r, err;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch == 'r')
			req.request_id = optarg;
		else if (ch == 'f')
			from = optarg;
		else
			return ctl_usage(USAGE);
	}
	if (from != NULL) {
		char *ids[MAX_BATCH];
		size_t n;

		if (optind != argc || req.request_id[0] != '\0')
			return ctl_usage(USAGE);
		n = read_ids(from, ids, &err);
		r = err ? CTL_USAGE : n == 0 ? ctl_usage(USAGE) : delete_many(ctl, ids, n);
		for (size_t i = 0; i < n; i++)
			free(ids[i]);
		return r;
	}
	if (argc - optind > 1) {
		if (req.request_id[0] != '\0' || argc - optind > MAX_BATCH)
			return ctl_usage(USAGE);
		return delete_many(ctl, argv + optind, (size_t)(argc - optind));
	}
	if (optind != argc - 1)
		return ctl_usage(USAGE);
	req.consumer_id = argv[optind];
	if (vc_unary(ctl->vc, "/vault.v1.Deletion/DeleteConsumer", &req.base,
	    &vault__v1__deletion_receipt__descriptor, (ProtobufCMessage **)&resp,
	    &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	print_receipt(ctl, resp);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}
