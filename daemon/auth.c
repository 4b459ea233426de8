#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>
#include <sodium.h>

#include "auth.h"
#include "crypto.h"
#include "keyring.h"

#define MAX_TOKEN_BYTES 512

struct auth {
	uint8_t *pepper;		/* locked */
	struct principal *principals;
	size_t n;
};

static const struct { const char *name; uint32_t role; } role_names[] = {
	{ "writer", ROLE_WRITER }, { "reader", ROLE_READER }, { "ml", ROLE_ML },
	{ "privacy", ROLE_PRIVACY }, { "keyadmin", ROLE_KEYADMIN },
	{ "auditor", ROLE_AUDITOR },
};

uint32_t
auth_role_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (strcmp(name, role_names[i].name) == 0)
			return role_names[i].role;
	return 0;
}

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

#define fail(err, errlen, ...) \
	vault_errorf(err, errlen, VAULT_ERR_CONFIG, __VA_ARGS__)

static int
load_list(config_setting_t *e, const char *what, int line, char ***out,
    size_t *n, char *err, size_t errlen)
{
	config_setting_t *l = config_setting_lookup(e, what);
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

static int
load_principal(struct principal *p, config_setting_t *e, char *err,
    size_t errlen)
{
	const char *name = NULL, *hash = NULL;
	int line = config_setting_source_line(e), r;
	char **roles = NULL;
	size_t n_roles = 0, bin_len = 0;

	if (!config_setting_lookup_string(e, "name", &name) || name[0] == '\0' ||
	    strlen(name) >= AUTH_NAME_MAX)
		return fail(err, errlen, "line %d: principal needs a name", line);
	snprintf(p->name, sizeof(p->name), "%s", name);
	if (!config_setting_lookup_string(e, "token_hash", &hash) ||
	    sodium_hex2bin(p->token_hash, sizeof(p->token_hash), hash,
	    strlen(hash), NULL, &bin_len, NULL) != 0 ||
	    bin_len != AUTH_HASH_BYTES)
		return fail(err, errlen, "line %d: principal '%s' needs token_hash, "
		    "64 hex digits (see vaultd --hash-token)", line, name);
	r = load_list(e, "roles", line, &roles, &n_roles, err, errlen);
	for (size_t i = 0; r == 0 && i < n_roles; i++) {
		uint32_t role = auth_role_parse(roles[i]);

		if (role == 0)
			r = fail(err, errlen, "line %d: principal '%s' has an unknown "
			    "role", line, name);
		p->roles |= role;
	}
	for (size_t i = 0; i < n_roles; i++)
		free(roles[i]);
	free(roles);
	if (r != 0)
		return r;
	if ((r = load_list(e, "purposes", line, &p->purposes, &p->n_purposes,
	    err, errlen)) != 0)
		return r;
	for (size_t i = 0; i < p->n_purposes; i++)
		if (strcmp(p->purposes[i], "*") == 0)
			p->all_purposes = true;
	return 0;
}

int
auth_load(struct auth **out, const char *policy_file, const char *pepper_file,
    char *err, size_t errlen)
{
	struct auth *a;
	config_t lc;
	config_setting_t *list;
	int n, r;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return fail(err, errlen, "out of memory");
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
	if (!config_read_file(&lc, policy_file)) {
		r = config_error_type(&lc) == CONFIG_ERR_FILE_IO ?
		    fail(err, errlen, "%s: cannot read the file", policy_file) :
		    fail(err, errlen, "%s:%d: %s", policy_file,
		    config_error_line(&lc), config_error_text(&lc));
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
		char msg[256];

		a->n++;
		if ((r = load_principal(&a->principals[i],
		    config_setting_get_elem(list, (unsigned)i), msg, sizeof(msg))) != 0) {
			fail(err, errlen, "%s: %s", policy_file, msg);
			goto out;
		}
	}
	r = 0;
out:
	config_destroy(&lc);
	if (r != 0) {
		auth_free(a);
		return r;
	}
	*out = a;
	return 0;
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++) {
		for (size_t j = 0; j < a->principals[i].n_purposes; j++)
			free(a->principals[i].purposes[j]);
		free(a->principals[i].purposes);
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
		if (sodium_memcmp(h, a->principals[i].token_hash, sizeof(h)) == 0)
			found = &a->principals[i];
	return found;
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
