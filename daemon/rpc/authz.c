/*
 * Authorization: a call's metadata checked, its peer identity (the client
 * certificate, else the bearer token) resolved to a principal through the
 * policy of conf/auth.h, and the principal's roles checked against the
 * method. Deny by default.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "conf/auth.h"
#include "rpc/authz.h"
#include "rpc/internal.h"
#include "util/utf8.h"

static struct auth *
current_auth(struct server *srv)
{
	struct auth *a;

	pthread_mutex_lock(&srv->auth_mu);
	a = auth_ref(srv->auth);
	pthread_mutex_unlock(&srv->auth_mu);
	return a;
}

/*
 * A certificate identity as the refusal may show it: printable ASCII only,
 * at most 64 characters (the rest cut, "..." added). Certificate names are
 * not secrets, but they are the peer's input all the same.
 */
#define SHOWN_IDENTITY_MAX 64

/* out must hold SHOWN_IDENTITY_MAX + 4 bytes. */
static void
shown_identity(char *out, const char *v, size_t n)
{
	size_t o = 0;

	for (; o < n && o < SHOWN_IDENTITY_MAX; o++)
		out[o] = v[o] >= 0x20 && v[o] < 0x7f && v[o] != '\'' ? v[o] : '?';
	if (n > o) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/*
 * The principal of the client certificate: the first subject alternative
 * name the policy knows; the common name only when the certificate has no
 * SAN. *presented tells whether the client showed a verified certificate;
 * seen gets the identity looked up first, for the refusal.
 */
static const struct principal *
cert_principal(struct rpc_ctx *c, bool *presented,
    char seen[SHOWN_IDENTITY_MAX + 4])
{
	static const char *const props[] = { GRPC_X509_SAN_PROPERTY_NAME,
	    GRPC_X509_CN_PROPERTY_NAME };
	grpc_auth_context *actx;
	const struct principal *p = NULL;

	*presented = false;
	seen[0] = '\0';
	if (!c->srv->tls || (actx = grpc_call_auth_context(c->call)) == NULL)
		return NULL;
	if (grpc_auth_context_peer_is_authenticated(actx)) {
		bool had_san = false;

		*presented = true;
		for (size_t i = 0; i < 2 && p == NULL && !(i == 1 && had_san); i++) {
			grpc_auth_property_iterator it =
			    grpc_auth_context_find_properties_by_name(actx, props[i]);
			const grpc_auth_property *prop;

			while (p == NULL && (prop = grpc_auth_property_iterator_next(&it)) != NULL) {
				had_san = had_san || i == 0;
				if (seen[0] == '\0')
					shown_identity(seen, prop->value,
					    prop->value_length);
				p = auth_identity(c->auth, prop->value, prop->value_length);
			}
		}
	}
	grpc_auth_context_release(actx);
	return p;
}

/*
 * Metadata values are request input too: text values must be UTF-8 without
 * NUL and of sane length ("-bin" values are binary by definition).
 */
#define MAX_METADATA_VALUE 8192

static int
check_metadata(struct rpc_ctx *c)
{
	for (size_t i = 0; i < c->md.count; i++) {
		grpc_slice k = c->md.metadata[i].key, v = c->md.metadata[i].value;
		size_t kl = GRPC_SLICE_LENGTH(k);
		bool binary = kl > 4 && memcmp(GRPC_SLICE_START_PTR(k) + kl - 4,
		    "-bin", 4) == 0;

		if (binary)
			continue;
		if (GRPC_SLICE_LENGTH(v) > MAX_METADATA_VALUE ||
		    !utf8_valid(GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v)))
			return rpc_fail(c, VAULT_ERR_INVALID, "a metadata value is %s",
			    GRPC_SLICE_LENGTH(v) > MAX_METADATA_VALUE ?
			    "longer than 8192 bytes" : "not valid UTF-8, or holds a NUL");
	}
	return 0;
}

/* Resolves the principal and checks the policy: deny by default. */
int
authz_check(struct rpc_ctx *c)
{
	const grpc_metadata *auth_md = NULL;
	char seen[SHOWN_IDENTITY_MAX + 4];
	bool presented;

	c->auth = current_auth(c->srv);
	if (check_metadata(c) != 0) {
		c->deny_reason = DENY_METADATA;
		call_denied(c, RPC_DENY_BAD_METADATA);
		return VAULT_ERR_INVALID;
	}
	if (c->m->flags & RPC_PUBLIC)
		return 0;
	c->principal = cert_principal(c, &presented, seen);
	for (size_t i = 0; c->principal == NULL && i < c->md.count; i++)
		if (grpc_slice_str_cmp(c->md.metadata[i].key, "authorization") == 0)
			auth_md = &c->md.metadata[i];
	if (c->principal == NULL && auth_md != NULL)
		c->principal = auth_bearer(c->auth,
		    (const char *)GRPC_SLICE_START_PTR(auth_md->value),
		    GRPC_SLICE_LENGTH(auth_md->value));
	if (c->principal == NULL && auth_md != NULL) {
		c->deny_reason = "invalid credentials";
		call_denied(c, RPC_DENY_INVALID_CREDENTIALS);
		return rpc_fail(c, VAULT_ERR_UNAUTHENTICATED, "invalid credentials: "
		    "the bearer token matches no principal in the policy%s",
		    presented ? ", nor does the client certificate's identity" : "");
	}
	if (c->principal == NULL && presented) {
		c->deny_reason = "certificate identity not in the policy";
		call_denied(c, RPC_DENY_UNKNOWN_IDENTITY);
		return rpc_fail(c, VAULT_ERR_UNAUTHENTICATED,
		    "client certificate identity '%s' is not in the policy "
		    "(a certificate with subject alternative names is known by "
		    "them, never by its common name)", seen[0] ? seen : "(none)");
	}
	if (c->principal == NULL) {
		c->deny_reason = "missing credentials";
		call_denied(c, RPC_DENY_MISSING_CREDENTIALS);
		return rpc_fail(c, VAULT_ERR_UNAUTHENTICATED, "missing credentials: "
		    "present a client certificate or send 'authorization: Bearer "
		    "<token>'");
	}
	if (!(c->m->flags & RPC_ANY_PRINCIPAL) &&
	    !auth_allows(c->auth, c->principal, c->m->path)) {
		call_denied(c, RPC_DENY_ROLE);
		return rpc_fail(c, VAULT_ERR_DENIED,
		    "principal '%s' has no role allowed to call %s",
		    c->principal->name, c->m->path);
	}
	return 0;
}
