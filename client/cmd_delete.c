#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "delete (CONSUMER [--request-id ID] | CONSUMER... | " \
	"--from-file F [--batch-size N])"
/*
 * Requests per DeleteConsumers call: the server's default max_delete_batch.
 * A server configured lower says so, and the batch shrinks to its limit.
 */
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
json_t *
ctl_receipt_json(const struct Vault__V1__DeletionReceipt *r)
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

/* One consumer to delete: its id, its request id or NULL, its line. */
struct item {
	char *id;
	char *request_id;
	size_t line;
};

struct items {
	struct item *v;
	size_t n, cap;
	bool owned;		/* ids read from a file: wiped and freed */
};

static void
items_free(struct items *it)
{
	for (size_t i = 0; it->owned && i < it->n; i++) {
		/* id and request id share one buffer: the line */
		sodium_memzero(it->v[i].id, strlen(it->v[i].id));
		free(it->v[i].id);
	}
	free(it->v);
	memset(it, 0, sizeof(*it));
}

static int
items_add(struct items *it, char *id, char *request_id, size_t line)
{
	if (it->n == it->cap) {
		size_t cap = it->cap ? it->cap * 2 : 1024;
		struct item *v = realloc(it->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		it->v = v;
		it->cap = cap;
	}
	it->v[it->n++] = (struct item){ id, request_id, line };
	return 0;
}

/*
 * Why a line cannot be a deletion, or NULL; splits "CONSUMER,REQUEST_ID" at
 * the last comma in place. The reason never quotes the line: it holds a
 * consumer id.
 */
static const char *
check_line(char *line, size_t len, char **request_id)
{
	char *comma = strrchr(line, ',');

	*request_id = NULL;
	if (strlen(line) != len)
		return "holds a NUL byte";
	if (comma != NULL) {
		*comma = '\0';
		*request_id = comma + 1;
		if (**request_id == '\0')
			return "has an empty request id after the comma";
		if (strlen(*request_id) > 128)
			return "has a request id longer than 128 bytes";
		for (const char *p = *request_id; *p != '\0'; p++)
			if (*p < 0x21 || *p > 0x7e)
				return "has a request id that is not printable "
				    "ASCII without spaces";
	}
	if (line[0] == '\0')
		return "has an empty consumer id";
	if (strlen(line) > 1024)
		return "has a consumer id longer than 1024 bytes";
	return NULL;
}

/*
 * Reads every line of path ("-": stdin) before anything is deleted, so
 * that a bad line stops the run with nothing done. Returns 0 or CTL_USAGE.
 */
static int
read_items(const char *path, struct items *it)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, no = 0;
	ssize_t len;
	int r = 0;

	it->owned = true;
	if (f == NULL) {
		fprintf(stderr, "vaultctl: cannot read %s: %s\n", path,
		    strerror(errno));
		return CTL_USAGE;
	}
	while (r == 0 && (len = getline(&line, &cap, f)) >= 0) {
		const char *why;
		char *rid;

		no++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || (no == 1 && strcmp(line, "consumer_id,request_id") == 0))
			continue;
		if ((why = check_line(line, (size_t)len, &rid)) != NULL) {
			fprintf(stderr, "vaultctl: %s line %zu %s\n", path, no, why);
			r = CTL_USAGE;
		} else if (items_add(it, line, rid, no) != 0) {
			fprintf(stderr, "vaultctl: out of memory\n");
			r = CTL_USAGE;
		} else {
			line = NULL;	/* the item owns it */
			cap = 0;
		}
	}
	if (r == 0 && ferror(f)) {
		fprintf(stderr, "vaultctl: cannot read %s: %s\n", path,
		    strerror(errno));
		r = CTL_USAGE;
	}
	if (line != NULL) {
		sodium_memzero(line, cap);
		free(line);
	}
	if (f != stdin)
		fclose(f);
	if (r == 0 && it->n == 0) {
		fprintf(stderr, "vaultctl: %s holds no consumer\n", path);
		r = CTL_USAGE;
	}
	return r;
}

/* "requests: at most N per call": the server's batch limit, or 0. */
static size_t
server_limit(const struct vc_status *st)
{
	unsigned long n;

	if (st->code == 3 /* INVALID_ARGUMENT */ &&
	    sscanf(st->message, "requests: at most %lu per call", &n) == 1)
		return n;
	return 0;
}

/* One DeleteConsumers call for it->v[off..off+n): its receipts printed. */
static int
delete_batch(struct ctl *ctl, const struct items *it, size_t off, size_t n,
    struct vc_status *st)
{
	Vault__V1__DeleteConsumersRequest req = VAULT__V1__DELETE_CONSUMERS_REQUEST__INIT;
	Vault__V1__DeleteConsumerRequest *items = calloc(n, sizeof(*items));
	Vault__V1__DeleteConsumerRequest **ptrs = calloc(n, sizeof(*ptrs));
	Vault__V1__DeleteConsumersResponse *resp = NULL;
	int r;

	if (items == NULL || ptrs == NULL) {
		free(items);
		free(ptrs);
		st->code = 2;
		snprintf(st->message, sizeof(st->message), "out of memory");
		return st->code;
	}
	for (size_t i = 0; i < n; i++) {
		vault__v1__delete_consumer_request__init(&items[i]);
		items[i].consumer_id = it->v[off + i].id;
		if (it->v[off + i].request_id != NULL)
			items[i].request_id = it->v[off + i].request_id;
		ptrs[i] = &items[i];
	}
	req.n_requests = n;
	req.requests = ptrs;
	r = vc_unary(ctl->vc, "/vault.v1.Deletion/DeleteConsumers", &req.base,
	    &vault__v1__delete_consumers_response__descriptor,
	    (ProtobufCMessage **)&resp, st, ctl->timeout_ms);
	free(items);
	free(ptrs);
	if (r != 0)
		return r;
	/* The receipts come in request order (DeleteConsumers' contract). */
	for (size_t i = 0; i < resp->n_receipts; i++)
		print_receipt(ctl, resp->receipts[i]);
	fflush(stdout);
	if (resp->n_receipts != n) {
		st->code = 13;	/* INTERNAL */
		snprintf(st->message, sizeof(st->message), "%zu receipts for %zu "
		    "requests", resp->n_receipts, n);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return st->code;
}

/*
 * Every item, batch after batch, in input order. A failed batch stops the
 * run with where it got to: the batches before it are done (and their
 * receipts printed), the failed one may be in part (DeleteConsumers is one
 * call, but the deadline may pass after the server applied it).
 */
static int
delete_all(struct ctl *ctl, const struct items *it, size_t batch,
    const char *path)
{
	bool bar = isatty(2) != 0;
	struct vc_status st;
	size_t off = 0;

	while (off < it->n) {
		size_t n = it->n - off < batch ? it->n - off : batch, lim;

		if (bar)
			ctl_progress("deleting", off, it->n);
		if (delete_batch(ctl, it, off, n, &st) == 0) {
			off += n;
			continue;
		}
		if ((lim = server_limit(&st)) != 0 && lim < batch) {
			batch = lim;	/* nothing of a refused batch was done */
			continue;
		}
		if (bar)
			fputc('\n', stderr);
		if (sscanf(st.message, "requests[%zu]", &lim) == 1 && lim < n)
			fprintf(stderr, "vaultctl: the server refused %s %zu%s%s\n",
			    path != NULL ? "line" : "consumer argument",
			    it->v[off + lim].line, path != NULL ? " of " : "",
			    path != NULL ? path : "");
		if (path != NULL)
			fprintf(stderr, "vaultctl: the batch of lines %zu to %zu of %s "
			    "failed; the %zu consumers before line %zu are deleted "
			    "and their receipts printed. Resume from line %zu "
			    "(tail -n +%zu %s); lines with a request id give the "
			    "same receipts when sent again\n", it->v[off].line,
			    it->v[off + n - 1].line, path, off, it->v[off].line,
			    it->v[off].line, it->v[off].line, path);
		return ctl_fail(ctl, &st);
	}
	if (bar) {
		ctl_progress("deleting", it->n, it->n);
		fputc('\n', stderr);
	}
	return CTL_OK;
}

int
cmd_delete(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "request-id", required_argument, NULL, 'r' },
		{ "from-file", required_argument, NULL, 'f' },
		{ "batch-size", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__DeleteConsumerRequest req = VAULT__V1__DELETE_CONSUMER_REQUEST__INIT;
	Vault__V1__DeletionReceipt *resp = NULL;
	struct items it = { 0 };
	const char *from = NULL;
	unsigned long batch = MAX_BATCH;
	struct vc_status st;
	char *end;
	int ch, r;

	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		if (ch == 'r') {
			req.request_id = optarg;
		} else if (ch == 'f') {
			from = optarg;
		} else if (ch == 'b') {
			batch = strtoul(optarg, &end, 10);
			if (*end != '\0' || batch == 0 || batch > 100000) {
				fprintf(stderr, "vaultctl: --batch-size wants 1 to 100000\n");
				return CTL_USAGE;
			}
		} else {
			return ctl_usage(USAGE);
		}
	}
	if (from != NULL) {
		if (optind != argc || req.request_id[0] != '\0')
			return ctl_usage(USAGE);
		if ((r = read_items(from, &it)) == 0)
			r = delete_all(ctl, &it, batch, from);
		items_free(&it);
		return r;
	}
	if (argc - optind > 1) {
		if (req.request_id[0] != '\0')
			return ctl_usage(USAGE);
		for (int i = optind; i < argc; i++)
			if (items_add(&it, argv[i], NULL, (size_t)(i - optind + 1)) != 0) {
				items_free(&it);
				return CTL_ERROR;
			}
		r = delete_all(ctl, &it, batch, NULL);
		items_free(&it);
		return r;
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
