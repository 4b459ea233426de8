/*
 * What identifies a caller, as the server hands it over from the
 * connection: the first byte chooses
 *   0: the "authorization" metadata value (auth_bearer; the slice's bytes,
 *      not NUL-terminated), then the policy's answer for every method;
 *   1: a client certificate identity (auth_identity; likewise);
 *   2: a gRPC peer string (denials_peer_address, denials_note and the
 *      summaries of denials_flush: the key audited for anonymous denials).
 * The policy is fixed (loaded once); its "dev" principal holds the token
 * "tok-reader-0123456789abcdef".
 */
#include <string.h>

#include "conf/auth.h"
#include "crypto/crypto.h"
#include "rpc/denial.h"
#include "util/utf8.h"
#include "fuzz_common.h"

static const char *const methods[] = {
	"/vault.v1.Consumers/PutAttributes", "/vault.v1.Consumers/GetAttributes",
	"/vault.v1.Features/FetchFeatures", "/vault.v1.Keys/GetKeyStatus",
	"/vault.v1.Audit/QueryAudit",
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static const char policy[] =
"roles = {\n"
"  writer = [\"/vault.v1.Consumers/PutAttributes\"];\n"
"  reader = [\"/vault.v1.Consumers/GetAttributes\"];\n"
"  ml = [\"/vault.v1.Features/FetchFeatures\"];\n"
"  keyadmin = [\"/vault.v1.Keys/GetKeyStatus\"];\n"
"  auditor = [\"/vault.v1.Audit/QueryAudit\"];\n"
"};\n"
"principals = (\n"
"  { name = \"dev\"; token_hash = \"%s\"; roles = [\"writer\", \"reader\"];\n"
"    purposes = [\"*\"]; },\n"
"  { name = \"reader\"; identity = \"reader.example\"; roles = [\"reader\"];\n"
"    purposes = [\"service\"]; },\n"
"  { name = \"ml\"; identity = \"spiffe://example/ml\"; roles = [\"ml\"]; },\n"
"  { name = \"auditor\"; identity = \"auditor\"; roles = [\"auditor\"]; }\n"
");\n";

static struct auth *auth;
static struct denials *denials;
static int64_t now_ms;

static void
setup(void)
{
	uint8_t pepper[CRYPTO_KEY_BYTES];
	char hash[AUTH_HASH_BYTES * 2 + 1], text[sizeof(policy) + 64], err[512];
	char pepper_path[4200];
	static const char token[] = "tok-reader-0123456789abcdef";
	int n;

	fuzz_key(pepper, sizeof(pepper), 5);
	snprintf(pepper_path, sizeof(pepper_path), "%s",
	    fuzz_file("token-pepper", pepper, sizeof(pepper)));
	auth_token_hash_hex(pepper, token, sizeof(token) - 1, hash);
	n = snprintf(text, sizeof(text), policy, hash);
	if (auth_load(&auth, fuzz_file("policy.conf", (const uint8_t *)text,
	    (size_t)n), pepper_path, methods, N_METHODS, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_callers: %s\n", err);
		abort();
	}
	if (denials_new(&denials, 10, 30) != 0)
		abort();
}

static void
principal(const struct principal *p)
{
	if (p == NULL)
		return;
	FUZZ_CHECK(strnlen(p->name, AUTH_NAME_MAX) < AUTH_NAME_MAX);
	for (size_t i = 0; i < N_METHODS; i++)
		(void)auth_allows(auth, p, methods[i]);
	(void)auth_purpose_allowed(p, "service", 7);
}

static void
summary(void *arg, const char *peer, const char *reason, const char *method,
    uint64_t count, int64_t interval_ms)
{
	(void)arg;
	(void)reason;
	(void)method;
	(void)interval_ms;
	FUZZ_CHECK(strnlen(peer, DENIAL_PEER_MAX) < DENIAL_PEER_MAX);
	FUZZ_CHECK(count > 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char addr[DENIAL_PEER_MAX], *s;
	uint8_t *exact;

	fuzz_init();
	if (auth == NULL)
		setup();
	if (size < 1)
		return 0;
	/* An exact-size copy: ASan sees any read past the value. */
	if ((exact = malloc(size - 1 ? size - 1 : 1)) == NULL)
		abort();
	memcpy(exact, data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		principal(auth_bearer(auth, (const char *)exact, size - 1));
		break;
	case 1:
		principal(auth_identity(auth, (const char *)exact, size - 1));
		break;
	case 2:
		s = fuzz_strndup(data + 1, size - 1);
		denials_peer_address(s, addr);
		FUZZ_CHECK(strnlen(addr, sizeof(addr)) < sizeof(addr));
		now_ms += 997;
		(void)denials_note(denials, s, "invalid credentials",
		    "/vault.v1.Consumers/GetAttributes", now_ms);
		if (now_ms % 7 == 0)
			denials_flush(denials, now_ms, false, summary, NULL);
		free(s);
		break;
	}
	free(exact);
	return 0;
}
