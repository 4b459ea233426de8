#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>
#include <sodium.h>

#include "conf/auth.h"
#include "conf/cfgfile.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"

#define MAX_TOKEN_BYTES 512

/* The policy's top-level names and a principal's keys; others are typos. */
static const char *const policy_keys[] = { "roles", "principals" };
static const char *const principal_keys[] = { "name", "token_hash",
	"identity", "roles", "purposes" };

#define fail(err, errlen, ...) \
	vault_errorf(err, errlen, VAULT_ERR_CONFIG, __VA_ARGS__)

struct role {
	char *name;
	char **methods;
	size_t n_methods;
};

struct auth {
	atomic_int refs;
	uint8_t *pepper;		/* locked */
	struct role roles[AUTH_MAX_ROLES];
	size_t n_roles;
	struct principal *principals;
	size_t n;
};

/*
 * What the built-in roles may never do, whatever the policy file says:
 * method path prefixes denied to them ("allow" lists the only ones allowed).
 */
static const struct {
	const char *role;
	const char *deny[4];
	const char *allow;
} invariants[] = {
	{ "ml", { "/vault.v1.Consumers/GetAttributes",
	    "/vault.v1.Consumers/ExportConsumer", "/vault.v1.Admin/", NULL },
	    NULL },
	{ "keyadmin", { "/vault.v1.Consumers/", "/vault.v1.Features/",
	    "/vault.v1.Audit/", "/vault.v1.Admin/" }, NULL },
	/* A backup is every consumer's data: only the backup role takes one. */
	{ "writer", { "/vault.v1.Admin/", NULL }, NULL },
	{ "reader", { "/vault.v1.Admin/", NULL }, NULL },
	{ "privacy", { "/vault.v1.Admin/", NULL }, NULL },
	{ "auditor", { NULL }, "/vault.v1.Audit/" },
	/* A backup holds every consumer's sealed data: nothing else. */
	{ "backup", { NULL }, "/vault.v1.Admin/" },
};

static void
token_hash(const uint8_t *pepper, const char *token, size_t len,
    uint8_t out[AUTH_HASH_BYTES])
{
	crypto_generichash(out, AUTH_HASH_BYTES, (const uint8_t *)token, len,
	    pepper, CRYPTO_KEY_BYTES);
}

void
auth_token_hash_hex(const uint8_t *pepper, const char *token, size_t len,
    char hex[AUTH_HASH_BYTES * 2 + 1])
{
	uint8_t h[AUTH_HASH_BYTES];

	token_hash(pepper, token, len, h);
	crypto_hex(h, sizeof(h), hex);
}

static void
free_list(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

static int
load_list(config_setting_t *l, const char *what, int line, char ***out,
    size_t *n, char *err, size_t errlen)
{
	int len;

	*out = NULL;
	*n = 0;
	if (l == NULL)
		return 0;
	if (!config_setting_is_array(l))
		return fail(err, errlen, "line %d: '%s' must be an array of strings",
		    line, what);
	len = config_setting_length(l);
	if (len == 0)
		return 0;
	if ((*out = calloc((size_t)len, sizeof(char *))) == NULL)
		return fail(err, errlen, "out of memory");
	for (int i = 0; i < len; i++) {
		const char *s = config_setting_get_string_elem(l, i);

		if (s == NULL || (((*out)[i] = strdup(s)) == NULL))
			return fail(err, errlen, "line %d: '%s' must hold strings",
			    line, what);
		(*n)++;
	}
	return 0;
}

static bool
known_method(const char *m, const char *const *known, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(m, known[i]) == 0)
			return true;
	return false;
}

/*
 * Admin methods hand out every consumer's sealed data: the role named
 * "backup" is the one that may call them. The table above only binds the
 * built-in names; without this, a role of any other name ("ops") could
 * list Backup beside consumer methods.
 */
#define ADMIN_PREFIX "/vault.v1.Admin/"
#define ADMIN_ROLE "backup"

static int
check_admin_role(const struct role *r, int line, char *err, size_t errlen)
{
	if (strcmp(r->name, ADMIN_ROLE) == 0)
		return 0;
	for (size_t m = 0; m < r->n_methods; m++)
		if (strncmp(r->methods[m], ADMIN_PREFIX,
		    strlen(ADMIN_PREFIX)) == 0)
			return fail(err, errlen, "line %d: role '%s' must never "
			    "call %s: only role '" ADMIN_ROLE "' calls "
			    ADMIN_PREFIX "* methods", line, r->name,
			    r->methods[m]);
	return 0;
}

static int
check_invariants(const struct role *r, int line, char *err, size_t errlen)
{
	if (check_admin_role(r, line, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(invariants) / sizeof(invariants[0]); i++) {
		if (strcmp(r->name, invariants[i].role) != 0)
			continue;
		for (size_t m = 0; m < r->n_methods; m++) {
			const char *allow = invariants[i].allow;

			if (allow != NULL && strncmp(r->methods[m], allow, strlen(allow)) != 0)
				return fail(err, errlen, "line %d: role '%s' may only call "
				    "%s* methods, not %s", line, r->name, allow, r->methods[m]);
			for (size_t d = 0; d < 4 && invariants[i].deny[d] != NULL; d++)
				if (strncmp(r->methods[m], invariants[i].deny[d],
				    strlen(invariants[i].deny[d])) == 0)
					return fail(err, errlen, "line %d: role '%s' must "
					    "never call %s", line, r->name, r->methods[m]);
		}
	}
	return 0;
}

static int
load_roles(struct auth *a, config_t *lc, const char *const *known,
    size_t n_known, char *err, size_t errlen)
{
	config_setting_t *roles = config_lookup(lc, "roles");
	int n, r;

	if (roles == NULL || !config_setting_is_group(roles))
		return fail(err, errlen, "'roles' must be a group of role = [methods]");
	n = config_setting_length(roles);
	if (n > AUTH_MAX_ROLES)
		return fail(err, errlen, "at most %d roles", AUTH_MAX_ROLES);
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(roles, (unsigned)i);
		struct role *role = &a->roles[a->n_roles];
		int line = config_setting_source_line(e);

		if ((role->name = strdup(config_setting_name(e))) == NULL)
			return fail(err, errlen, "out of memory");
		a->n_roles++;
		if ((r = load_list(e, role->name, line, &role->methods,
		    &role->n_methods, err, errlen)) != 0)
			return r;
		for (size_t m = 0; m < role->n_methods; m++)
			if (!known_method(role->methods[m], known, n_known))
				return fail(err, errlen, "line %d: role '%s' names an "
				    "unknown method %s", line, role->name, role->methods[m]);
		if ((r = check_invariants(role, line, err, errlen)) != 0)
			return r;
	}
	return 0;
}

static int
role_index(const struct auth *a, const char *name)
{
	for (size_t i = 0; i < a->n_roles; i++)
		if (strcmp(a->roles[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int
load_principal(struct auth *a, struct principal *p, config_setting_t *e,
    char *err, size_t errlen)
{
	const char *name = NULL, *hash = NULL, *identity = NULL;
	int line = config_setting_source_line(e), r;
	char **roles = NULL, where[AUTH_NAME_MAX + 16];
	size_t n_roles = 0, bin_len = 0;

	if (!config_setting_lookup_string(e, "name", &name) || name[0] == '\0' ||
	    strlen(name) >= AUTH_NAME_MAX)
		return fail(err, errlen, "line %d: principal needs a name", line);
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(where, sizeof(where), "principal '%s'", name);
	if ((r = cfgfile_check_names(e, principal_keys, sizeof(principal_keys) /
	    sizeof(principal_keys[0]), where, err, errlen)) != 0)
		return r;
	if (config_setting_lookup_string(e, "token_hash", &hash)) {
		if (sodium_hex2bin(p->token_hash, sizeof(p->token_hash), hash,
		    strlen(hash), NULL, &bin_len, NULL) != 0 ||
		    bin_len != AUTH_HASH_BYTES)
			return fail(err, errlen, "line %d: principal '%s': token_hash is "
			    "64 hex digits (see vaultd --hash-token)", line, name);
		p->has_token = true;
	}
	if (config_setting_lookup_string(e, "identity", &identity)) {
		if (identity[0] == '\0' ||
		    (p->identity = strdup(identity)) == NULL)
			return fail(err, errlen, "line %d: principal '%s': identity "
			    "must not be empty", line, name);
	}
	if (!p->has_token && p->identity == NULL)
		return fail(err, errlen, "line %d: principal '%s' needs a "
		    "token_hash or a certificate identity", line, name);
	r = load_list(config_setting_lookup(e, "roles"), "roles", line, &roles,
	    &n_roles, err, errlen);
	for (size_t i = 0; r == 0 && i < n_roles; i++) {
		int idx = role_index(a, roles[i]);

		if (idx < 0)
			r = fail(err, errlen, "line %d: principal '%s' has role '%s', "
			    "which 'roles' does not define", line, name, roles[i]);
		else
			p->roles |= 1u << idx;
	}
	free_list(roles, n_roles);
	if (r != 0)
		return r;
	if ((r = load_list(config_setting_lookup(e, "purposes"), "purposes", line,
	    &p->purposes, &p->n_purposes, err, errlen)) != 0)
		return r;
	for (size_t i = 0; i < p->n_purposes; i++)
		if (strcmp(p->purposes[i], "*") == 0)
			p->all_purposes = true;
	return 0;
}

/* Two principals may not share a token or a certificate identity. */
static int
check_unique(const struct auth *a, char *err, size_t errlen)
{
	for (size_t i = 0; i < a->n; i++)
		for (size_t j = i + 1; j < a->n; j++) {
			const struct principal *p = &a->principals[i], *q = &a->principals[j];

			if (strcmp(p->name, q->name) == 0 ||
			    (p->has_token && q->has_token &&
			    sodium_memcmp(p->token_hash, q->token_hash, AUTH_HASH_BYTES) == 0) ||
			    (p->identity && q->identity && strcmp(p->identity, q->identity) == 0))
				return fail(err, errlen, "principals '%s' and '%s' share a "
				    "name, token or identity", p->name, q->name);
		}
	return 0;
}

int
auth_load(struct auth **out, const char *policy_file, const char *pepper_file,
    const char *const *known, size_t n_known, char *err, size_t errlen)
{
	struct auth *a;
	config_t lc;
	config_setting_t *list;
	char msg[400];
	int n, r;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return fail(err, errlen, "out of memory");
	atomic_init(&a->refs, 1);
	config_init(&lc);
	if ((a->pepper = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL) {
		r = fail(err, errlen, "out of memory");
		goto out;
	}
	if (keyring_read_secret_file(pepper_file, a->pepper, "token pepper file") != 0) {
		r = fail(err, errlen, "%s: unusable token pepper file (see log)",
		    pepper_file);
		goto out;
	}
	if ((r = cfgfile_read(&lc, policy_file, err, errlen)) != 0)
		goto out;
	if ((r = cfgfile_check_names(config_root_setting(&lc), policy_keys,
	    sizeof(policy_keys) / sizeof(policy_keys[0]), "", msg,
	    sizeof(msg))) != 0) {
		fail(err, errlen, "%s: %s", policy_file, msg);
		goto out;
	}
	if ((r = load_roles(a, &lc, known, n_known, msg, sizeof(msg))) != 0) {
		fail(err, errlen, "%s: %s", policy_file, msg);
		goto out;
	}
	list = config_lookup(&lc, "principals");
	if (list == NULL || !config_setting_is_list(list)) {
		r = fail(err, errlen, "%s: 'principals' must be a list", policy_file);
		goto out;
	}
	n = config_setting_length(list);
	if (n > 0 && (a->principals = calloc((size_t)n, sizeof(*a->principals))) == NULL) {
		r = fail(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		a->n++;
		if ((r = load_principal(a, &a->principals[i],
		    config_setting_get_elem(list, (unsigned)i), msg, sizeof(msg))) != 0) {
			fail(err, errlen, "%s: %s", policy_file, msg);
			goto out;
		}
	}
	if ((r = check_unique(a, msg, sizeof(msg))) != 0) {
		fail(err, errlen, "%s: %s", policy_file, msg);
		goto out;
	}
	r = 0;
out:
	config_destroy(&lc);
	if (r != 0) {
		auth_unref(a);
		return r;
	}
	*out = a;
	return 0;
}

struct auth *
auth_ref(struct auth *a)
{
	atomic_fetch_add(&a->refs, 1);
	return a;
}

void
auth_unref(struct auth *a)
{
	if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	for (size_t i = 0; i < a->n; i++) {
		free_list(a->principals[i].purposes, a->principals[i].n_purposes);
		free(a->principals[i].identity);
	}
	for (size_t i = 0; i < a->n_roles; i++) {
		free(a->roles[i].name);
		free_list(a->roles[i].methods, a->roles[i].n_methods);
	}
	free(a->principals);
	crypto_secret_free(a->pepper);
	free(a);
}

const struct principal *
auth_bearer(const struct auth *a, const char *header, size_t len)
{
	static const char scheme[] = "Bearer ";
	const struct principal *found = NULL;
	uint8_t h[AUTH_HASH_BYTES];

	if (len <= sizeof(scheme) - 1 || len > MAX_TOKEN_BYTES ||
	    strncasecmp(header, scheme, sizeof(scheme) - 1) != 0)
		return NULL;
	token_hash(a->pepper, header + sizeof(scheme) - 1,
	    len - (sizeof(scheme) - 1), h);
	for (size_t i = 0; i < a->n; i++)
		if (a->principals[i].has_token &&
		    sodium_memcmp(h, a->principals[i].token_hash, sizeof(h)) == 0)
			found = &a->principals[i];
	return found;
}

const struct principal *
auth_identity(const struct auth *a, const char *id, size_t len)
{
	for (size_t i = 0; i < a->n; i++) {
		const char *pid = a->principals[i].identity;

		if (pid != NULL && strlen(pid) == len && memcmp(pid, id, len) == 0)
			return &a->principals[i];
	}
	return NULL;
}

bool
auth_allows(const struct auth *a, const struct principal *p, const char *method)
{
	for (size_t i = 0; i < a->n_roles; i++) {
		if (!(p->roles & (1u << i)))
			continue;
		for (size_t m = 0; m < a->roles[i].n_methods; m++)
			if (strcmp(a->roles[i].methods[m], method) == 0)
				return true;
	}
	return false;
}

bool
auth_purpose_allowed(const struct principal *p, const char *purpose, size_t len)
{
	if (p->all_purposes)
		return true;
	for (size_t i = 0; i < p->n_purposes; i++)
		if (strlen(p->purposes[i]) == len &&
		    memcmp(p->purposes[i], purpose, len) == 0)
			return true;
	return false;
}
