#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "watch-deletions [--dataset D | --purpose P] [--after SEQ] [--follow]"

static int
on_event(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__DeletionEvent *e = (const void *)m;
	char hex[2 * 64 + 1] = "";

	(void)arg;
	if (e->pseudonym.len <= 64)
		sodium_bin2hex(hex, sizeof(hex), e->pseudonym.data, e->pseudonym.len);
	printf("{\"seq\":%" PRIu64 ",\"dataset_id\":\"%s\",\"pseudonym\":\"%s\","
	    "\"deleted_at_ms\":%" PRId64 "}\n", e->seq, e->dataset_id, hex,
	    e->deleted_at_ms);
	fflush(stdout);
	return 0;
}

int
cmd_watch(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dataset", required_argument, NULL, 'd' },
		{ "purpose", required_argument, NULL, 'p' },
		{ "after", required_argument, NULL, 'a' },
		{ "follow", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__WatchDeletionsRequest req = VAULT__V1__WATCH_DELETIONS_REQUEST__INIT;
	struct vc_status st;
	int ch;

	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 'd': req.dataset_id = optarg; break;
		case 'p': req.purpose = optarg; break;
		case 'a': req.after_seq = strtoull(optarg, NULL, 10); break;
		case 'f': req.follow = 1; break;
		default: return ctl_usage(USAGE);
		}
	}
	if (optind != argc)
		return ctl_usage(USAGE);
	if (vc_stream(ctl->vc, "/vault.v1.Deletion/WatchDeletions", &req.base,
	    &vault__v1__deletion_event__descriptor, on_event, NULL, &st,
	    req.follow ? 0 : ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	return CTL_OK;
}
