/*
 * vaultctl: the command line for every role. One file per subcommand.
 *
 *   vaultctl [--addr HOST:PORT] [--token-file F] [--ca F [--cert F --key F]]
 *            [--json] [--timeout MS] CMD ...
 *
 * The global options may also come after the command, anywhere before a
 * "--" (after which every word is the command's, even one that looks like
 * an option). "vaultctl CMD --help", "vaultctl help CMD", "vaultctl
 * --version" and a "did you mean" for a mistyped command are here; the
 * help texts are in help.c.
 *
 * Defaults come from $VAULT_ADDR, $VAULT_TOKEN_FILE, $VAULT_CA, $VAULT_CERT
 * and $VAULT_KEY. With a CA the connection is TLS (mTLS with a certificate).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util/suggest.h"
#include "vaultctl.h"

static const struct ctl_command commands[] = {
	{ "health", "health [SERVICE]", cmd_health },
	{ "put", "put CONSUMER NAME=VALUE...", cmd_put },
	{ "get", "get CONSUMER [NAME...] [--purpose P]", cmd_get },
	{ "delete", "delete (CONSUMER [--request-id ID] | CONSUMER... |\n"
	  "          --from-file F [--batch-size N])", cmd_delete },
	{ "watch-deletions", "watch-deletions [--dataset D | --purpose P] [--after SEQ] "
	  "[--follow]", cmd_watch },
	{ "watch-consent", "watch-consent [--dataset D | --purpose P] [--after SEQ] "
	  "[--follow]", cmd_watch_consent },
	{ "drop", "drop process FILE [--list-type T] [--out FILE] [--receipts FILE]\n"
	  "          [--batch-size N]", cmd_drop },
	{ "receipt", "receipt verify FILE [--public-key HEX]", cmd_receipt },
	{ "export", "export CONSUMER", cmd_export },
	{ "audit", "audit verify | audit query [--since T] [--until T] [--principal P]\n"
	  "          [--consumer ID] [--method M] [--limit N]\n"
	  "          | audit report [--since T] [--until T] [--factor N]", cmd_audit },
	{ "keys", "keys status | keys rotate [VERSION] | keys destroy VERSION [--yes] |\n"
	  "          keys rekey CONSUMER", cmd_keys },
	{ "consent", "consent CONSUMER [--purpose P (--grant|--deny)] [--source S] [--gpc]\n"
	  "          [--limit-sensitive|--unlimit-sensitive] [--opt-out-sale|--opt-in-sale]\n"
	  "          [--opt-out-admt|--opt-in-admt] [--legal-hold|--no-legal-hold]",
	  cmd_consent },
	{ "features", "features --purpose P --dataset D [--attributes A,B...]\n"
	  "          [--format csv|jsonl] [--batch-size N] [--page-token T]", cmd_features },
	{ "backup", "backup --out FILE", cmd_backup },
	{ "deletions", "deletions export --out FILE [--after SEQ]", cmd_deletions },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *f)
{
	fprintf(f, "usage: vaultctl [global options] COMMAND [options] ...\n"
	    "commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].usage);
	fprintf(f, "  help [COMMAND]\n  version\n");
	ctl_help_globals(f);
	fprintf(f, "\"vaultctl COMMAND --help\" or \"vaultctl help COMMAND\" "
	    "tells more; see also vaultctl(1).\n");
}

static const struct ctl_command *
find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0)
			return &commands[i];
	return NULL;
}

/* An unknown command: the closest one, and every one. */
static int
unknown_command(const char *name)
{
	const char *names[N_COMMANDS + 2];
	const char *close;

	for (size_t i = 0; i < N_COMMANDS; i++)
		names[i] = commands[i].name;
	names[N_COMMANDS] = "help";
	names[N_COMMANDS + 1] = "version";
	close = suggest_closest(name, names, N_COMMANDS + 2);
	fprintf(stderr, "vaultctl: unknown command '%s'", name);
	if (close != NULL)
		fprintf(stderr, "; did you mean '%s'?", close);
	fputc('\n', stderr);
	fprintf(stderr, "commands:");
	for (size_t i = 0; i < N_COMMANDS + 2; i++)
		fprintf(stderr, " %s", names[i]);
	fputc('\n', stderr);
	return CTL_USAGE;
}

/* "vaultctl help [COMMAND]" and "COMMAND --help": to stdout, exit 0. */
static int
help(const char *name)
{
	const struct ctl_command *cmd;

	if (name == NULL) {
		usage(stdout);
		return CTL_OK;
	}
	if (strcmp(name, "help") == 0 || strcmp(name, "version") == 0) {
		printf("usage: vaultctl help [COMMAND] | vaultctl version\n");
		return CTL_OK;
	}
	if ((cmd = find_command(name)) == NULL)
		return unknown_command(name);
	if (ctl_help(stdout, name) != 0) {
		printf("usage: vaultctl [global options] %s\n", cmd->usage);
		ctl_help_globals(stdout);
	}
	return CTL_OK;
}

static int
version(void)
{
	printf("vaultctl %s\n", VAULT_VERSION);
	return CTL_OK;
}

/* The global options, found anywhere on the line (before "--"). */
struct globals {
	const char *addr, *token_file, *ca, *cert, *key;
	bool json, help, version;
	int timeout_ms;
};

/*
 * Takes the global options out of argv (exact names, "--opt VALUE" or
 * "--opt=VALUE"), wherever they are, and leaves the rest in order in argv
 * with the new count in *argc. Returns 0 or CTL_USAGE.
 */
static int
take_globals(int *argc, char **argv, struct globals *g)
{
	static const struct { const char *name; size_t off; } valued[] = {
		{ "--addr", offsetof(struct globals, addr) },
		{ "--token-file", offsetof(struct globals, token_file) },
		{ "--ca", offsetof(struct globals, ca) },
		{ "--cert", offsetof(struct globals, cert) },
		{ "--key", offsetof(struct globals, key) },
	};
	int out = 1, i = 1;

	for (; i < *argc; i++) {
		const char *a = argv[i], *val = NULL, *eq = strchr(a, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
		bool taken = false;

		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "--json") == 0)
			g->json = taken = true;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			g->help = taken = true;
		else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0)
			g->version = taken = true;
		for (size_t k = 0; !taken && k < 6; k++) {
			const char *name = k < 5 ? valued[k].name : "--timeout";

			if (strncmp(a, name, nlen) != 0 || name[nlen] != '\0')
				continue;
			if (eq != NULL)
				val = eq + 1;
			else if (i + 1 < *argc)
				val = argv[++i];
			else {
				fprintf(stderr, "vaultctl: %s needs a value\n", name);
				return CTL_USAGE;
			}
			if (k < 5) {
				*(const char **)((char *)g + valued[k].off) = val;
			} else {
				char *end;
				long ms = strtol(val, &end, 10);

				if (*val == '\0' || *end != '\0' || ms <= 0 ||
				    ms > 86400000) {
					fprintf(stderr, "vaultctl: --timeout must be a "
					    "positive number of milliseconds\n");
					return CTL_USAGE;
				}
				g->timeout_ms = (int)ms;
			}
			taken = true;
		}
		if (!taken)
			argv[out++] = argv[i];
	}
	for (; i < *argc; i++)
		argv[out++] = argv[i];
	argv[out] = NULL;
	*argc = out;
	return 0;
}

/* A whole file (at most 1 MiB) and its length, or NULL with a message. */
static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t n = 0;

	if (f != NULL && (buf = malloc(1 << 20)) != NULL)
		n = fread(buf, 1, (1 << 20) - 1, f);
	if (f == NULL || buf == NULL || n == 0) {
		fprintf(stderr, "vaultctl: cannot read %s\n", path);
		free(buf);
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Wipes a secret read_file returned (len: what it read), and frees it. */
static void
secret_free(char *buf, size_t len)
{
	if (buf == NULL)
		return;
	sodium_memzero(buf, len);
	free(buf);
}

/* The token: the first line of its file; *len is the file's length. */
static char *
read_token(const char *path, size_t *len)
{
	char *buf = read_file(path, len);

	if (buf == NULL)
		return NULL;
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		fprintf(stderr, "vaultctl: token file %s is empty\n", path);
		secret_free(buf, *len);
		return NULL;
	}
	return buf;
}

/* Reads the token and the PEM files and opens the channel. */
static int
open_channel(struct ctl *ctl, const struct globals *g, char **token,
    size_t *token_len, char **pems, size_t *key_len)
{
	size_t len;
	bool has_cert = g->cert != NULL && g->cert[0] != '\0';

	if (g->token_file != NULL && g->token_file[0] != '\0' &&
	    (*token = read_token(g->token_file, token_len)) == NULL)
		return CTL_USAGE;
	if (has_cert != (g->key != NULL && g->key[0] != '\0')) {
		fprintf(stderr, "vaultctl: --cert and --key go together\n");
		return CTL_USAGE;
	}
	ctl->tls = g->ca != NULL && g->ca[0] != '\0';
	ctl->client_cert = ctl->tls && has_cert;
	if (ctl->tls && ((pems[0] = read_file(g->ca, &len)) == NULL ||
	    (has_cert && ((pems[1] = read_file(g->cert, &len)) == NULL ||
	    (pems[2] = read_file(g->key, key_len)) == NULL))))
		return CTL_USAGE;
	if ((ctl->tls ? vc_open_tls(&ctl->vc, g->addr, *token, pems[0], pems[1],
	    pems[2]) : vc_open(&ctl->vc, g->addr, *token)) != 0) {
		fprintf(stderr, "vaultctl: out of memory\n");
		return CTL_ERROR;
	}
	return CTL_OK;
}

int
main(int argc, char **argv)
{
	struct globals g = { .addr = getenv("VAULT_ADDR"),
	    .token_file = getenv("VAULT_TOKEN_FILE"), .ca = getenv("VAULT_CA"),
	    .cert = getenv("VAULT_CERT"), .key = getenv("VAULT_KEY"),
	    .timeout_ms = 10000 };
	struct ctl ctl = { 0 };
	const struct ctl_command *cmd;
	char *token = NULL, *pems[3] = { NULL, NULL, NULL };
	size_t token_len = 0, key_len = 0;
	int r;

	if ((r = take_globals(&argc, argv, &g)) != 0)
		return r;
	if (g.addr == NULL || g.addr[0] == '\0')
		g.addr = "127.0.0.1:50051";
	ctl.json = g.json;
	ctl.timeout_ms = g.timeout_ms;
	if (g.version || (argc == 2 && strcmp(argv[1], "version") == 0))
		return version();
	if (argc >= 2 && strcmp(argv[1], "help") == 0)
		return argc > 3 ? ctl_usage("help [COMMAND]") :
		    help(argc == 3 ? argv[2] : NULL);
	if (g.help)
		return help(argc >= 2 && argv[1][0] != '-' ? argv[1] : NULL);
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2)
			fprintf(stderr, "vaultctl: unknown option '%s'\n", argv[1]);
		usage(stderr);
		return CTL_USAGE;
	}
	if ((cmd = find_command(argv[1])) == NULL)
		return unknown_command(argv[1]);
	vc_global_init();
	if ((r = open_channel(&ctl, &g, &token, &token_len, pems, &key_len)) == CTL_OK)
		r = cmd->run(&ctl, argc - 1, argv + 1);
	vc_close(ctl.vc);
	vc_global_shutdown();
	secret_free(token, token_len);
	secret_free(pems[2], key_len);
	free(pems[1]);
	free(pems[0]);
	return r;
}
