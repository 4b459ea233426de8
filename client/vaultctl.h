/* vaultctl: shared state of the command line and its subcommands. */
#ifndef VAULTCTL_H
#define VAULTCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "vault_client.h"

/* Exit codes a script can rely on (see README). */
enum ctl_exit {
	CTL_OK = 0,
	CTL_ERROR = 1,		/* anything not below */
	CTL_USAGE = 2,
	CTL_NOT_FOUND = 3,
	CTL_INVALID = 4,	/* the server refused the input */
	CTL_DENIED = 5,		/* unauthenticated or permission denied */
	CTL_UNAVAILABLE = 6,	/* no server, or deadline exceeded */
	CTL_ANOMALY = 7,	/* audit report: anomalies were flagged */
};

struct ctl {
	struct vc *vc;
	bool json;
	int timeout_ms;
	bool tls;		/* --ca given: the connection is TLS */
	bool client_cert;	/* --cert/--key given */
};

struct ctl_command {
	const char *name;
	const char *usage;
	int (*run)(struct ctl *ctl, int argc, char **argv);
};

int cmd_health(struct ctl *ctl, int argc, char **argv);
int cmd_put(struct ctl *ctl, int argc, char **argv);
int cmd_get(struct ctl *ctl, int argc, char **argv);
int cmd_delete(struct ctl *ctl, int argc, char **argv);
int cmd_consent(struct ctl *ctl, int argc, char **argv);
int cmd_features(struct ctl *ctl, int argc, char **argv);
int cmd_keys(struct ctl *ctl, int argc, char **argv);
int cmd_receipt(struct ctl *ctl, int argc, char **argv);
int cmd_watch(struct ctl *ctl, int argc, char **argv);
int cmd_watch_consent(struct ctl *ctl, int argc, char **argv);
int cmd_drop(struct ctl *ctl, int argc, char **argv);
/* A receipt as the JSON line vaultctl delete --json prints (cmd_delete.c). */
struct Vault__V1__DeletionReceipt;
json_t *ctl_receipt_json(const struct Vault__V1__DeletionReceipt *r);
int cmd_audit(struct ctl *ctl, int argc, char **argv);
int cmd_export(struct ctl *ctl, int argc, char **argv);
int cmd_backup(struct ctl *ctl, int argc, char **argv);
int cmd_deletions(struct ctl *ctl, int argc, char **argv);

/* Prints a failed call to stderr (or as JSON) and returns its exit code. */
int ctl_fail(const struct ctl *ctl, const struct vc_status *st);
/* Prints a usage error and returns CTL_USAGE. */
int ctl_usage(const char *usage);

/*
 * getopt_long over a subcommand's argv (argv[0]: its name) with long
 * options only; on '?' it has said which option is wrong, with the closest
 * known one ("did you mean"), or that the option needs a value.
 */
struct option;
int ctl_getopt(int argc, char **argv, const struct option *longopts);

/*
 * help.c: the text of "vaultctl help COMMAND" and "COMMAND --help" (usage,
 * what it does, its options, an example) to f; 0, or -1 when the command
 * has no help text (its usage line is all there is).
 */
int ctl_help(FILE *f, const char *command);
/* The global options, as the general usage and every command's help show. */
void ctl_help_globals(FILE *f);

/*
 * timearg.c: a time for --since/--until: RFC 3339 ("2026-12-01",
 * "2026-12-01T10:00:00Z", "2026-12-01T10:00:00+02:00"), a duration back
 * from now_ms ("30m", "24h", "7d", "2w", "90s"), or epoch milliseconds.
 * 0 and *ms set, or -1 (nothing printed) when s is none of them.
 */
int ctl_parse_time(const char *s, int64_t now_ms, int64_t *ms);

/*
 * confirm.c: asks on the terminal to type expect; true only when the line
 * typed is exactly expect. Never call it when stdin is not a terminal.
 */
bool ctl_confirm(const char *prompt, const char *expect);
/* A progress bar "label [####    ] done/total" on stderr, redrawn in place. */
void ctl_progress(const char *label, uint64_t done, uint64_t total);

#endif
