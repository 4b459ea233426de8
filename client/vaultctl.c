/*
 * vaultctl: the command line for every role. One file per subcommand.
 *
 *   vaultctl [--addr HOST:PORT] [--token-file F] [--ca F [--cert F --key F]]
 *            [--json] [--timeout MS] CMD ...
 *
 * Defaults come from $VAULT_ADDR, $VAULT_TOKEN_FILE, $VAULT_CA, $VAULT_CERT
 * and $VAULT_KEY. With a CA the connection is TLS (mTLS with a certificate).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vaultctl.h"

static const struct ctl_command commands[] = {
	{ "health", "health [SERVICE]", cmd_health },
	{ "put", "put CONSUMER NAME=VALUE...", cmd_put },
	{ "get", "get CONSUMER [NAME...] [--purpose P]", cmd_get },
	{ "delete", "delete (CONSUMER [--request-id ID] | CONSUMER... | --from-file F)",
	  cmd_delete },
	{ "watch-deletions", "watch-deletions [--dataset D | --purpose P] [--after SEQ] "
	  "[--follow]", cmd_watch },
	{ "receipt", "receipt verify FILE [--public-key HEX]", cmd_receipt },
	{ "export", "export CONSUMER", cmd_export },
	{ "audit", "audit verify | audit query [--since MS] [--until MS] [--principal P]\n"
	  "          [--consumer ID] [--method PATH]", cmd_audit },
	{ "keys", "keys status | keys rotate [VERSION] | keys destroy VERSION | "
	  "keys rekey CONSUMER", cmd_keys },
	{ "consent", "consent CONSUMER [--purpose P (--grant|--deny)] [--source S] [--gpc]\n"
	  "          [--limit-sensitive|--unlimit-sensitive] [--opt-out-sale|--opt-in-sale]",
	  cmd_consent },
	{ "features", "features --purpose P --dataset D [--attributes A,B...]\n"
	  "          [--format csv|jsonl] [--batch-size N] [--page-token T]", cmd_features },
	{ "backup", "backup --out FILE", cmd_backup },
	{ "deletions", "deletions export --out FILE [--after SEQ]", cmd_deletions },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: vaultctl [--addr HOST:PORT] [--token-file FILE] "
	    "[--ca FILE [--cert FILE --key FILE]] [--json] [--timeout MS] "
	    "COMMAND ...\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %s\n", commands[i].usage);
	fprintf(f, "environment: VAULT_ADDR (default 127.0.0.1:50051), "
	    "VAULT_TOKEN_FILE, VAULT_CA, VAULT_CERT, VAULT_KEY\nexit codes: 0 ok, 1 error, 2 usage, 3 not found, "
	    "4 invalid argument, 5 unauthenticated or denied, 6 unavailable\n");
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

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "token-file", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "ca", required_argument, NULL, 'C' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'K' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .timeout_ms = 10000 };
	const char *addr = getenv("VAULT_ADDR"), *token_file = getenv("VAULT_TOKEN_FILE");
	const char *ca = getenv("VAULT_CA"), *cert = getenv("VAULT_CERT");
	const char *key = getenv("VAULT_KEY");
	char *ca_pem = NULL, *cert_pem = NULL, *key_pem = NULL;
	const struct ctl_command *cmd = NULL;
	size_t token_len = 0, key_len = 0, len;
	char *token = NULL;
	int ch, r;

	if (addr == NULL || addr[0] == '\0')
		addr = "127.0.0.1:50051";
	/* '+': stop at the subcommand; its own options follow it. */
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a': addr = optarg; break;
		case 't': token_file = optarg; break;
		case 'j': ctl.json = true; break;
		case 'C': ca = optarg; break;
		case 'c': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'T':
			ctl.timeout_ms = atoi(optarg);
			if (ctl.timeout_ms <= 0) {
				fprintf(stderr, "vaultctl: --timeout must be positive\n");
				return CTL_USAGE;
			}
			break;
		case 'h': usage(stdout); return CTL_OK;
		default: usage(stderr); return CTL_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		fprintf(stderr, "vaultctl: unknown command '%s'\n", argv[optind]);
		usage(stderr);
		return CTL_USAGE;
	}
	if (token_file != NULL && token_file[0] != '\0' &&
	    (token = read_token(token_file, &token_len)) == NULL)
		return CTL_USAGE;
	r = CTL_USAGE;
	if ((cert != NULL && cert[0] != '\0') != (key != NULL && key[0] != '\0')) {
		fprintf(stderr, "vaultctl: --cert and --key go together\n");
		goto out;
	}
	if (ca != NULL && ca[0] != '\0' &&
	    ((ca_pem = read_file(ca, &len)) == NULL ||
	    (cert != NULL && cert[0] != '\0' &&
	    ((cert_pem = read_file(cert, &len)) == NULL ||
	    (key_pem = read_file(key, &key_len)) == NULL))))
		goto out;
	vc_global_init();
	if ((ca_pem != NULL ? vc_open_tls(&ctl.vc, addr, token, ca_pem, cert_pem,
	    key_pem) : vc_open(&ctl.vc, addr, token)) != 0) {
		fprintf(stderr, "vaultctl: out of memory\n");
		r = CTL_ERROR;
	} else {
		optind++;
		r = cmd->run(&ctl, argc - optind + 1, argv + optind - 1);
	}
	vc_close(ctl.vc);
	vc_global_shutdown();
out:
	secret_free(token, token_len);
	secret_free(key_pem, key_len);
	free(cert_pem);
	free(ca_pem);
	return r;
}
