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

#define USAGE "features --purpose P --dataset D [--attributes A,B...] " \
	"[--format csv|jsonl] [--batch-size N] [--page-token T] [--shard I/N]"
#define MAX_ATTRS 256
#define MAX_SHARDS 1024		/* the server's limit (FETCH_MAX_SHARDS) */

struct out_state {
	bool jsonl, header_done, progress;
	unsigned long long rows;
	char last_token[128];
};

static void
write_row(struct out_state *o, const Vault__V1__FeatureBatch *b,
    const Vault__V1__FeatureRow *row)
{
	char hex[2 * 64 + 1];

	sodium_bin2hex(hex, sizeof(hex), row->pseudonym.data,
	    row->pseudonym.len > 64 ? 64 : row->pseudonym.len);
	if (o->jsonl) {
		json_t *t = json_object();

		for (size_t j = 0; j < row->n_tokens && j < b->n_attributes; j++)
			json_object_set_new(t, b->attributes[j],
			    json_integer((json_int_t)row->tokens[j]));
		json_t *line = json_pack("{s:s,s:o}", "pseudonym", hex, "tokens", t);
		json_dumpf(line, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(line);
		return;
	}
	fputs(hex, stdout);
	for (size_t j = 0; j < row->n_tokens; j++)
		printf(",%" PRIu64, row->tokens[j]);
	putchar('\n');
}

static int
on_batch(const ProtobufCMessage *msg, void *arg)
{
	const Vault__V1__FeatureBatch *b = (const void *)msg;
	struct out_state *o = arg;

	if (!o->jsonl && !o->header_done) {
		fputs("pseudonym", stdout);
		for (size_t j = 0; j < b->n_attributes; j++)
			printf(",%s", b->attributes[j]);
		putchar('\n');
		o->header_done = true;
	}
	for (size_t i = 0; i < b->n_rows; i++)
		write_row(o, b, b->rows[i]);
	o->rows += b->n_rows;
	snprintf(o->last_token, sizeof(o->last_token), "%s", b->next_page_token);
	if (o->progress)
		fprintf(stderr, "\rvaultctl: %llu rows", o->rows);
	return 0;
}

/* Splits "a,b,c" in place into names. */
static size_t
split(char *list, char **names)
{
	size_t n = 0;

	for (char *tok = strtok(list, ","); tok != NULL && n < MAX_ATTRS;
	    tok = strtok(NULL, ","))
		names[n++] = tok;
	return n;
}

/* A decimal number below 2^32, digits only; -1 when s is not one. */
static int
parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* --shard I/N: shard I of N, 0 <= I < N <= MAX_SHARDS. */
static int
parse_shard(const char *cmd, const char *s, uint32_t *index, uint32_t *count)
{
	const char *slash = strchr(s, '/');

	if (slash == NULL || parse_u32(s, (size_t)(slash - s), index) != 0 ||
	    parse_u32(slash + 1, strlen(slash + 1), count) != 0 ||
	    *count < 1 || *count > MAX_SHARDS || *index >= *count) {
		fprintf(stderr, "vaultctl %s: --shard: '%s' is not I/N (shard I "
		    "of N, decimal, 0 <= I < N <= %d)\n", cmd, s, MAX_SHARDS);
		return -1;
	}
	return 0;
}

int
cmd_features(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "purpose", required_argument, NULL, 'p' },
		{ "dataset", required_argument, NULL, 'd' },
		{ "attributes", required_argument, NULL, 'a' },
		{ "format", required_argument, NULL, 'f' },
		{ "batch-size", required_argument, NULL, 'b' },
		{ "page-token", required_argument, NULL, 't' },
		{ "shard", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__FetchFeaturesRequest req = VAULT__V1__FETCH_FEATURES_REQUEST__INIT;
	struct out_state o = { .progress = isatty(2) != 0 };
	char *names[MAX_ATTRS];
	struct vc_status st;
	int ch;

	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 'p': req.purpose = optarg; break;
		case 'd': req.dataset_id = optarg; break;
		case 'a': req.n_attributes = split(optarg, names); req.attributes = names; break;
		case 'f':
			if (strcmp(optarg, "jsonl") == 0)
				o.jsonl = true;
			else if (strcmp(optarg, "csv") == 0)
				o.jsonl = false;
			else {
				fprintf(stderr, "vaultctl %s: --format: '%s' is not "
				    "a format (csv, jsonl)\n", argv[0], optarg);
				return CTL_USAGE;
			}
			break;
		case 'b': req.batch_size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 't': req.page_token = optarg; break;
		case 's':
			if (parse_shard(argv[0], optarg, &req.shard_index,
			    &req.shard_count) != 0)
				return CTL_USAGE;
			break;
		default: return ctl_usage(USAGE);
		}
	}
	if (optind != argc || req.purpose[0] == '\0' || req.dataset_id[0] == '\0')
		return ctl_usage(USAGE);
	vc_stream(ctl->vc, "/vault.v1.Features/FetchFeatures", &req.base,
	    &vault__v1__feature_batch__descriptor, on_batch, &o, &st, 0);
	fflush(stdout);
	if (o.progress)
		fputc('\n', stderr);
	if (st.code != 0) {
		if (o.last_token[0] != '\0')
			fprintf(stderr, "vaultctl: stream broken after %llu rows; resume "
			    "with --page-token %s\n", o.rows, o.last_token);
		return ctl_fail(ctl, &st);
	}
	return CTL_OK;
}
