#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE_DELETIONS "watch-deletions [--dataset D | --purpose P] [--after SEQ] [--follow]"
#define USAGE_CONSENT "watch-consent [--dataset D | --purpose P] [--after SEQ] [--follow]"

/* The pseudonym in hex (empty when longer than any the vault hands out). */
static void
pseudonym_hex(ProtobufCBinaryData p, char hex[2 * 64 + 1])
{
	hex[0] = '\0';
	if (p.len <= 64)
		sodium_bin2hex(hex, 2 * 64 + 1, p.data, p.len);
}

static int
on_deletion(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__DeletionEvent *e = (const void *)m;
	char hex[2 * 64 + 1];

	(void)arg;
	pseudonym_hex(e->pseudonym, hex);
	printf("{\"seq\":%" PRIu64 ",\"dataset_id\":\"%s\",\"pseudonym\":\"%s\","
	    "\"deleted_at_ms\":%" PRId64 "}\n", e->seq, e->dataset_id, hex,
	    e->deleted_at_ms);
	fflush(stdout);
	return 0;
}

static int
on_revocation(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__ConsentRevocation *e = (const void *)m;
	char hex[2 * 64 + 1];

	(void)arg;
	pseudonym_hex(e->pseudonym, hex);
	printf("{\"seq\":%" PRIu64 ",\"dataset_id\":\"%s\",\"purpose\":\"%s\","
	    "\"pseudonym\":\"%s\",\"revoked_at_ms\":%" PRId64 "}\n", e->seq,
	    e->dataset_id, e->purpose, hex, e->revoked_at_ms);
	fflush(stdout);
	return 0;
}

/* Both feeds take the same options; each prints one JSON object per event. */
struct watch_opts {
	const char *dataset_id, *purpose;
	uint64_t after_seq;
	bool follow;
};

/* 0, or the exit code of a usage error. */
static int
parse(const char *usage, int argc, char **argv, struct watch_opts *o)
{
	static const struct option longopts[] = {
		{ "dataset", required_argument, NULL, 'd' },
		{ "purpose", required_argument, NULL, 'p' },
		{ "after", required_argument, NULL, 'a' },
		{ "follow", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	*o = (struct watch_opts){ "", "", 0, false };
	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 'd': o->dataset_id = optarg; break;
		case 'p': o->purpose = optarg; break;
		case 'a':
			errno = 0;
			o->after_seq = strtoull(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    optarg[0] == '-') {
				fprintf(stderr, "vaultctl: --after: not a "
				    "sequence number: %s\n", optarg);
				return ctl_usage(usage);
			}
			break;
		case 'f': o->follow = true; break;
		default: return ctl_usage(usage);
		}
	}
	if (optind != argc)
		return ctl_usage(usage);
	return 0;
}

int
cmd_watch(struct ctl *ctl, int argc, char **argv)
{
	Vault__V1__WatchDeletionsRequest req = VAULT__V1__WATCH_DELETIONS_REQUEST__INIT;
	struct watch_opts o;
	struct vc_status st;
	int r;

	if ((r = parse(USAGE_DELETIONS, argc, argv, &o)) != 0)
		return r;
	req.dataset_id = (char *)o.dataset_id;
	req.purpose = (char *)o.purpose;
	req.after_seq = o.after_seq;
	req.follow = o.follow;
	if (vc_stream(ctl->vc, "/vault.v1.Deletion/WatchDeletions", &req.base,
	    &vault__v1__deletion_event__descriptor, on_deletion, NULL, &st,
	    o.follow ? 0 : ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	return CTL_OK;
}

int
cmd_watch_consent(struct ctl *ctl, int argc, char **argv)
{
	Vault__V1__WatchConsentRequest req = VAULT__V1__WATCH_CONSENT_REQUEST__INIT;
	struct watch_opts o;
	struct vc_status st;
	int r;

	if ((r = parse(USAGE_CONSENT, argc, argv, &o)) != 0)
		return r;
	req.dataset_id = (char *)o.dataset_id;
	req.purpose = (char *)o.purpose;
	req.after_seq = o.after_seq;
	req.follow = o.follow;
	if (vc_stream(ctl->vc, "/vault.v1.Features/WatchConsent", &req.base,
	    &vault__v1__consent_revocation__descriptor, on_revocation, NULL, &st,
	    o.follow ? 0 : ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	return CTL_OK;
}
