/*
 * vaultctl drop process FILE: a DROP list file (CalPrivacy's CSV, "ID,Hash"
 * or a Removed file's "ID,Hash,ListType") sent to ProcessDropList in
 * batches; the statuses written as the report the specification asks for,
 * "Id,Status", one line per item (cancelled ones are not reported).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "drop process FILE [--list-type T] [--out FILE] " \
	"[--receipts FILE] [--batch-size N]"
#define DEFAULT_BATCH 1000
#define LINE_MAX_BYTES 256

struct batch {
	Vault__V1__DropItem *items, **ptrs;
	char (*ids)[72], (*hashes)[48], (*lists)[16];
	size_t n, cap;
};

struct totals {
	unsigned long lines, by_status[7];
};

/* The list type a file's name carries: <date>_<broker>_<Type>[_x].csv. */
static const char *
list_from_name(const char *path, char *out, size_t len)
{
	const char *base = strrchr(path, '/'), *p, *q;

	base = base ? base + 1 : path;
	if ((p = strchr(base, '_')) == NULL || (p = strchr(p + 1, '_')) == NULL)
		return NULL;
	p++;
	for (q = p; *q != '\0' && *q != '_' && *q != '.'; q++)
		;
	if ((size_t)(q - p) >= len || q == p)
		return NULL;
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
	return out;
}

static int
send_batch(struct ctl *ctl, struct batch *b, const char *list, bool removed,
    FILE *out, FILE *receipts, struct totals *t)
{
	Vault__V1__ProcessDropListRequest req =
	    VAULT__V1__PROCESS_DROP_LIST_REQUEST__INIT;
	Vault__V1__ProcessDropListResponse *resp = NULL;
	struct vc_status st;

	if (b->n == 0)
		return CTL_OK;
	req.list_type = (char *)list;
	req.removed = removed;
	req.n_items = b->n;
	req.items = b->ptrs;
	if (vc_unary(ctl->vc, "/vault.v1.Deletion/ProcessDropList", &req.base,
	    &vault__v1__process_drop_list_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0) {
		fprintf(stderr, "vaultctl drop: the batch of lines %lu to %lu "
		    "failed; the lines before are done, and running the whole "
		    "file again is safe\n", t->lines - b->n + 1, t->lines);
		return ctl_fail(ctl, &st);
	}
	for (size_t i = 0; i < resp->n_results; i++) {
		const Vault__V1__DropResult *r = resp->results[i];

		if (r->status >= 2 && r->status <= 6)
			t->by_status[r->status]++;
		if (r->status != VAULT__V1__DROP_STATUS__DROP_CANCELLED)
			fprintf(out, "%s,%d\n", r->id, (int)r->status);
		if (receipts != NULL && r->receipt != NULL) {
			json_t *o = ctl_receipt_json(r->receipt);

			json_dumpf(o, receipts, JSON_COMPACT);
			fputc('\n', receipts);
			json_decref(o);
		}
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	b->n = 0;
	return CTL_OK;
}

/* Splits "a,b[,c]" in place; the number of fields. */
static int
split(char *line, char **f, int max)
{
	int n = 0;

	line[strcspn(line, "\r\n")] = '\0';
	f[n++] = line;
	for (char *p = line; *p != '\0' && n < max; p++)
		if (*p == ',') {
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

static int
process(struct ctl *ctl, const char *path, const char *list, FILE *out,
    FILE *receipts, size_t batch_size)
{
	char line[LINE_MAX_BYTES], *f[4], name_list[16];
	struct batch b = { 0 };
	struct totals t = { 0 };
	bool removed;
	FILE *in;
	int nf, r = CTL_OK;

	if ((in = fopen(path, "r")) == NULL) {
		fprintf(stderr, "vaultctl drop: %s: cannot open it\n", path);
		return CTL_ERROR;
	}
	if (fgets(line, sizeof(line), in) == NULL) {
		fprintf(stderr, "vaultctl drop: %s: empty; a list starts with "
		    "the header ID,Hash\n", path);
		fclose(in);
		return CTL_USAGE;
	}
	nf = split(line, f, 4);
	removed = nf == 3 && strcasecmp(f[2], "ListType") == 0;
	if (nf < 2 || strcasecmp(f[0], "ID") != 0 ||
	    strcasecmp(f[1], "Hash") != 0 || (nf == 3 && !removed) || nf > 3) {
		fprintf(stderr, "vaultctl drop: %s: the header must be ID,Hash "
		    "(a list) or ID,Hash,ListType (a Removed file)\n", path);
		fclose(in);
		return CTL_USAGE;
	}
	if (!removed && list == NULL &&
	    (list = list_from_name(path, name_list, sizeof(name_list))) == NULL) {
		fprintf(stderr, "vaultctl drop: %s: give --list-type (the file's "
		    "name does not say it)\n", path);
		fclose(in);
		return CTL_USAGE;
	}
	b.cap = batch_size;
	if ((b.items = calloc(b.cap, sizeof(*b.items))) == NULL ||
	    (b.ptrs = calloc(b.cap, sizeof(*b.ptrs))) == NULL ||
	    (b.ids = calloc(b.cap, sizeof(*b.ids))) == NULL ||
	    (b.hashes = calloc(b.cap, sizeof(*b.hashes))) == NULL ||
	    (b.lists = calloc(b.cap, sizeof(*b.lists))) == NULL) {
		fprintf(stderr, "vaultctl drop: out of memory\n");
		r = CTL_ERROR;
		goto out;
	}
	fprintf(out, "Id,Status\n");
	while (r == CTL_OK && fgets(line, sizeof(line), in) != NULL) {
		Vault__V1__DropItem *it = &b.items[b.n];

		t.lines++;
		if (line[strcspn(line, "\r\n")] == '\0' && line[0] == '\0')
			continue;
		nf = split(line, f, 4);
		if (nf != (removed ? 3 : 2) || strlen(f[0]) >= sizeof(b.ids[0]) ||
		    strlen(f[1]) >= sizeof(b.hashes[0]) ||
		    (removed && strlen(f[2]) >= sizeof(b.lists[0]))) {
			fprintf(stderr, "vaultctl drop: %s:%lu: not a line of the "
			    "list (%s)\n", path, t.lines + 1,
			    removed ? "ID,Hash,ListType" : "ID,Hash");
			r = CTL_USAGE;
			break;
		}
		vault__v1__drop_item__init(it);
		strcpy(b.ids[b.n], f[0]);
		strcpy(b.hashes[b.n], f[1]);
		it->id = b.ids[b.n];
		it->hash = b.hashes[b.n];
		if (removed) {
			strcpy(b.lists[b.n], f[2]);
			it->list_type = b.lists[b.n];
		}
		b.ptrs[b.n] = it;
		if (++b.n == b.cap)
			r = send_batch(ctl, &b, removed ? "" : list, removed, out,
			    receipts, &t);
	}
	if (r == CTL_OK)
		r = send_batch(ctl, &b, removed ? "" : list, removed, out,
		    receipts, &t);
	fflush(out);
	fprintf(stderr, "vaultctl drop: %lu lines: %lu deleted, %lu opted out, "
	    "%lu exempted, %lu not found, %lu cancelled\n", t.lines,
	    t.by_status[3], t.by_status[4], t.by_status[2], t.by_status[5],
	    t.by_status[6]);
out:
	free(b.items);
	free(b.ptrs);
	free(b.ids);
	free(b.hashes);
	free(b.lists);
	fclose(in);
	return r;
}

int
cmd_drop(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "list-type", required_argument, NULL, 'l' },
		{ "out", required_argument, NULL, 'o' },
		{ "receipts", required_argument, NULL, 'r' },
		{ "batch-size", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *list = NULL, *out_path = NULL, *rc_path = NULL;
	FILE *out = stdout, *receipts = NULL;
	unsigned long batch = DEFAULT_BATCH;
	char *end;
	int ch, r;

	if (argc < 2 || strcmp(argv[1], "process") != 0)
		return ctl_usage(USAGE);
	argc--;
	argv++;
	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 'l': list = optarg; break;
		case 'o': out_path = optarg; break;
		case 'r': rc_path = optarg; break;
		case 'b':
			batch = strtoul(optarg, &end, 10);
			if (*end != '\0' || batch < 1 || batch > 100000) {
				fprintf(stderr, "vaultctl drop: --batch-size: 1 to "
				    "100000\n");
				return CTL_USAGE;
			}
			break;
		default: return ctl_usage(USAGE);
		}
	}
	if (optind != argc - 1)
		return ctl_usage(USAGE);
	if (out_path != NULL && (out = fopen(out_path, "w")) == NULL) {
		fprintf(stderr, "vaultctl drop: %s: cannot write it\n", out_path);
		return CTL_ERROR;
	}
	if (rc_path != NULL && (receipts = fopen(rc_path, "a")) == NULL) {
		fprintf(stderr, "vaultctl drop: %s: cannot write it\n", rc_path);
		if (out != stdout)
			fclose(out);
		return CTL_ERROR;
	}
	r = process(ctl, argv[optind], list, out, receipts, batch);
	if (out != stdout && fclose(out) != 0 && r == CTL_OK)
		r = CTL_ERROR;
	if (receipts != NULL && fclose(receipts) != 0 && r == CTL_OK)
		r = CTL_ERROR;
	return r;
}
