/*
 * The policy loader (conf/auth.h): auth_load reads the policy by path, so
 * each input is written to a scratch file; the token pepper is a fixed
 * 0600 file. The known methods are every method of vault.proto and health,
 * as the daemon gives them. A policy that loads is then asked what the
 * daemon asks of it on each call.
 */
#include <string.h>

#include "conf/auth.h"
#include "crypto/crypto.h"
#include "grpc/health/v1/health.pb-c.h"
#include "vault/v1/vault.pb-c.h"
#include "fuzz_common.h"

#define MAX_METHODS 64

static const char *methods[MAX_METHODS];
static size_t n_methods;
static char pepper_path[4200];

static void
add_service(const ProtobufCServiceDescriptor *d)
{
	for (unsigned i = 0; i < d->n_methods && n_methods < MAX_METHODS; i++) {
		char *m;

		if (asprintf(&m, "/%s/%s", d->name, d->methods[i].name) < 0)
			abort();
		methods[n_methods++] = m;
	}
}

static void
setup(void)
{
	uint8_t pepper[CRYPTO_KEY_BYTES];

	add_service(&vault__v1__consumers__descriptor);
	add_service(&vault__v1__features__descriptor);
	add_service(&vault__v1__deletion__descriptor);
	add_service(&vault__v1__keys__descriptor);
	add_service(&vault__v1__audit__descriptor);
	add_service(&grpc__health__v1__health__descriptor);
	fuzz_key(pepper, sizeof(pepper), 5);
	snprintf(pepper_path, sizeof(pepper_path), "%s",
	    fuzz_file("token-pepper", pepper, sizeof(pepper)));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth *a = NULL;
	const struct principal *p;
	char err[512];
	const char *path;
	static const char bearer[] = "Bearer tok-reader-0123456789abcdef";

	fuzz_init();
	if (n_methods == 0)
		setup();
	/* libconfig's @include would read other files: not this decoder. */
	if (size > 64 * 1024 || memmem(data, size, "@include", 8) != NULL)
		return 0;
	path = fuzz_file("policy.conf", data, size);
	err[0] = '\0';
	if (auth_load(&a, path, pepper_path, methods, n_methods, err,
	    sizeof(err)) != 0) {
		FUZZ_CHECK(a == NULL && err[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(a != NULL);
	p = auth_bearer(a, bearer, sizeof(bearer) - 1);
	if (p == NULL)
		p = auth_identity(a, "reader.example", 14);
	if (p != NULL) {
		FUZZ_CHECK(strnlen(p->name, AUTH_NAME_MAX) < AUTH_NAME_MAX);
		for (size_t i = 0; i < n_methods; i++)
			(void)auth_allows(a, p, methods[i]);
		(void)auth_purpose_allowed(p, "analytics", 9);
	}
	auth_unref(a);
	return 0;
}
