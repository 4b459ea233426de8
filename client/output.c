#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "util/suggest.h"
#include "vaultctl.h"

static int
exit_code(int grpc_code)
{
	switch (grpc_code) {
	case 0: return CTL_OK;
	case 5: return CTL_NOT_FOUND;			/* NOT_FOUND */
	case 3: return CTL_INVALID;			/* INVALID_ARGUMENT */
	case 7: case 16: return CTL_DENIED;		/* PERMISSION_DENIED, UNAUTHENTICATED */
	case 4: case 14: return CTL_UNAVAILABLE;	/* DEADLINE_EXCEEDED, UNAVAILABLE */
	default: return CTL_ERROR;
	}
}

/*
 * A TLS handshake the server broke off reaches gRPC's client as a bare
 * UNAVAILABLE ("Socket closed", or an SSL error). What the client knows of
 * its own side tells the likely cause: no client certificate offered to a
 * server that requires one, or a plaintext client at a TLS server.
 */
static const char *
connection_hint(const struct ctl *ctl, const struct vc_status *st)
{
	static const char *const marks[] = { "Socket closed", "ocket closed",
	    "andshake", "CERTIFICATE_REQUIRED", "certificate required",
	    "SSL_ERROR", "Connection reset" };
	bool handshake = false;

	if (st->code != 14)	/* UNAVAILABLE */
		return NULL;
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		handshake = handshake || strstr(st->message, marks[i]) != NULL;
	if (!handshake)
		return NULL;
	if (ctl->tls && !ctl->client_cert)
		return "the server closed the TLS connection: it requires a client "
		    "certificate (--cert/--key, or $VAULT_CERT/$VAULT_KEY)";
	if (ctl->tls)
		return "the server refused the TLS handshake: is the client "
		    "certificate signed by the CA the server trusts "
		    "(tls_client_ca), and not expired? Does --ca verify the server?";
	return "the server closed the connection: if it serves TLS, give --ca "
	    "(and --cert/--key)";
}

int
ctl_fail(const struct ctl *ctl, const struct vc_status *st)
{
	const char *hint = connection_hint(ctl, st);

	if (ctl->json) {
		json_t *o = json_pack("{s:{s:s,s:i,s:s}}", "error", "code",
		    vc_code_name(st->code), "grpc_code", st->code, "message",
		    st->message);

		if (hint != NULL)
			json_object_set_new(json_object_get(o, "error"), "hint",
			    json_string(hint));

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	}
	if (hint != NULL)
		fprintf(stderr, "vaultctl: %s: %s\n  (%s)\n", vc_code_name(st->code),
		    hint, st->message);
	else
		fprintf(stderr, "vaultctl: %s: %s\n", vc_code_name(st->code),
		    st->message);
	return exit_code(st->code);
}

int
ctl_usage(const char *usage)
{
	fprintf(stderr, "usage: vaultctl [global options] %s\n", usage);
	return CTL_USAGE;
}

int
ctl_getopt(int argc, char **argv, const struct option *longopts)
{
	const char *names[64], *close, *bad;
	char word[64];
	size_t n = 0;
	int ch;

	opterr = 0;		/* the message below says more than getopt's */
	if ((ch = getopt_long(argc, argv, "", longopts, NULL)) != '?')
		return ch;
	bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
	snprintf(word, sizeof(word), "%.*s", (int)strcspn(bad, "="), bad);
	for (size_t i = 0; longopts[i].name != NULL && n < 64; i++) {
		if (strcmp(word + strspn(word, "-"), longopts[i].name) == 0 &&
		    longopts[i].has_arg == required_argument) {
			fprintf(stderr, "vaultctl: %s: %s needs a value\n", argv[0],
			    word);
			return ch;
		}
		names[n++] = longopts[i].name;
	}
	close = suggest_closest(word + strspn(word, "-"), names, n);
	fprintf(stderr, "vaultctl: %s: unknown option '%s'", argv[0], word);
	if (close != NULL)
		fprintf(stderr, "; did you mean '--%s'?", close);
	fputc('\n', stderr);
	return ch;
}
