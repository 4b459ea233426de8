/* vaultctl: shared state of the command line and its subcommands. */
#ifndef VAULTCTL_H
#define VAULTCTL_H

#include <stdbool.h>

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
};

struct ctl {
	struct vc *vc;
	bool json;
	int timeout_ms;
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
int cmd_audit(struct ctl *ctl, int argc, char **argv);
int cmd_export(struct ctl *ctl, int argc, char **argv);
int cmd_backup(struct ctl *ctl, int argc, char **argv);
int cmd_deletions(struct ctl *ctl, int argc, char **argv);

/* Prints a failed call to stderr (or as JSON) and returns its exit code. */
int ctl_fail(const struct ctl *ctl, const struct vc_status *st);
/* Prints a usage error and returns CTL_USAGE. */
int ctl_usage(const char *usage);

#endif
