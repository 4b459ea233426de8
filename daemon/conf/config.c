#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "conf/cfgfile.h"
#include "conf/config.h"
#include "store/store.h"

/* SET_CHOICE: a string; def_str lists the values allowed, "a|b", a the default. */
/* SET_OPT_STRING: a string, NULL when the file does not set it. */
enum setting_type { SET_STRING, SET_PATH, SET_OPT_PATH, SET_INT, SET_BOOL,
	SET_CHOICE, SET_OPT_STRING };

/* The settings table: name, type, default, bounds, where it lands. */
static const struct setting {
	const char *name;
	enum setting_type type;
	const char *def_str;
	int def_int;
	int min, max;
	size_t off;
} settings[] = {
	{ "listen", SET_STRING, "127.0.0.1:50051", 0, 0, 0, offsetof(struct config, listen) },
	{ "store_dir", SET_PATH, "db", 0, 0, 0, offsetof(struct config, store_dir) },
	{ "keys_dir", SET_PATH, "keys", 0, 0, 0, offsetof(struct config, keys_dir) },
	{ "policy_file", SET_PATH, "policy.conf", 0, 0, 0, offsetof(struct config, policy_file) },
	{ "token_pepper_file", SET_PATH, "keys/token-pepper", 0, 0, 0, offsetof(struct config, token_pepper_file) },
	{ "insecure_plaintext", SET_BOOL, NULL, 0, 0, 1, offsetof(struct config, insecure_plaintext) },
	{ "tls_cert", SET_OPT_PATH, NULL, 0, 0, 0, offsetof(struct config, tls_cert) },
	{ "tls_key", SET_OPT_PATH, NULL, 0, 0, 0, offsetof(struct config, tls_key) },
	{ "tls_client_ca", SET_OPT_PATH, NULL, 0, 0, 0, offsetof(struct config, tls_client_ca) },
	{ "tls_require_client_cert", SET_BOOL, NULL, 1, 0, 1, offsetof(struct config, tls_require_client_cert) },
	{ "workers", SET_INT, NULL, 32, 1, 1024, offsetof(struct config, workers) },
	{ "cq_threads", SET_INT, NULL, 2, 1, 64, offsetof(struct config, cq_threads) },
	{ "max_request_bytes", SET_INT, NULL, 1 << 20, 1024, 64 << 20, offsetof(struct config, max_request_bytes) },
	{ "map_size_mb", SET_INT, NULL, 4096, 16, 1 << 24, offsetof(struct config, map_size_mb) },
	{ "store_high_water_pct", SET_INT, NULL, 90, 50, 99, offsetof(struct config, store_high_water_pct) },
	{ "disk_reserve_mb", SET_INT, NULL, 64, 0, 1 << 20, offsetof(struct config, disk_reserve_mb) },
	{ "audit_anomaly_factor", SET_INT, NULL, 3, 2, 1000, offsetof(struct config, audit_anomaly_factor) },
	{ "audit_journal_reserve_mb", SET_INT, NULL, 4, 0, 1024, offsetof(struct config, audit_journal_reserve_mb) },
	{ "shutdown_grace_ms", SET_INT, NULL, 10000, 0, 600000, offsetof(struct config, shutdown_grace_ms) },
	{ "max_attributes_per_request", SET_INT, NULL, 64, 1, SCHEMA_MAX_ATTRS, offsetof(struct config, max_attributes_per_request) },
	{ "max_consumer_id_bytes", SET_INT, NULL, 128, 1, 1024, offsetof(struct config, max_consumer_id_bytes) },
	{ "max_group", SET_INT, NULL, 256, 1, 65536, offsetof(struct config, max_group) },
	{ "backup_stall_s", SET_INT, NULL, 60, 1, 86400, offsetof(struct config, backup_stall_s) },
	{ "max_streams", SET_INT, NULL, 64, 1, 4096, offsetof(struct config, max_streams) },
	{ "max_streams_per_principal", SET_INT, NULL, 16, 1, 4096, offsetof(struct config, max_streams_per_principal) },
	{ "stream_memory_rows", SET_INT, NULL, 32768, 1024, 1 << 24, offsetof(struct config, stream_memory_rows) },
	{ "stream_spill_max_mb", SET_INT, NULL, 4096, 1, 1 << 24, offsetof(struct config, stream_spill_max_mb) },
	{ "max_public_streams", SET_INT, NULL, 16, 0, 4096, offsetof(struct config, max_public_streams) },
	{ "max_public_streams_per_peer", SET_INT, NULL, 2, 0, 4096, offsetof(struct config, max_public_streams_per_peer) },
	{ "auth_failures_per_peer", SET_INT, NULL, 20, 1, 1000000, offsetof(struct config, auth_failures_per_peer) },
	{ "denial_audit_interval_s", SET_INT, NULL, 60, 1, 86400, offsetof(struct config, denial_audit_interval_s) },
	{ "transport_memory_mb", SET_INT, NULL, 64, 16, 1 << 20, offsetof(struct config, transport_memory_mb) },
	{ "max_pending_requests", SET_INT, NULL, 1024, 1, 1 << 20, offsetof(struct config, max_pending_requests) },
	{ "max_pending_requests_per_peer", SET_INT, NULL, 128, 1, 1 << 20, offsetof(struct config, max_pending_requests_per_peer) },
	{ "request_timeout_ms", SET_INT, NULL, 5000, 100, 3600000, offsetof(struct config, request_timeout_ms) },
	{ "suppression_k", SET_INT, NULL, 5, 1, 1000000, offsetof(struct config, suppression_k) },
	{ "ledger_retention_s", SET_INT, NULL, 30 * 86400, 0, INT32_MAX, offsetof(struct config, ledger_retention_s) },
	{ "request_retention_s", SET_INT, NULL, 2 * 365 * 86400, 0, INT32_MAX, offsetof(struct config, request_retention_s) },
	{ "require_mlock", SET_BOOL, NULL, 0, 0, 1, offsetof(struct config, require_mlock) },
	{ "janitor_interval_ms", SET_INT, NULL, 1000, 10, 3600000, offsetof(struct config, janitor_interval_ms) },
	{ "drop_suppression_days", SET_INT, NULL, 730, 1, 36500, offsetof(struct config, drop_suppression_days) },
	{ "consumer_inactive_days", SET_INT, NULL, 0, 0, 36500, offsetof(struct config, consumer_inactive_days) },
	{ "max_delete_batch", SET_INT, NULL, 1000, 1, 100000, offsetof(struct config, max_delete_batch) },
	{ "shred_epoch_s", SET_INT, NULL, 0, 0, INT32_MAX, offsetof(struct config, shred_epoch_s) },
	{ "shred_retain_s", SET_INT, NULL, 86400, 0, INT32_MAX, offsetof(struct config, shred_retain_s) },
	{ "log_level", SET_STRING, "info", 0, 0, 0, offsetof(struct config, log_level) },
	{ "audit_broken", SET_CHOICE, "refuse|not_serving", 0, 0, 0, offsetof(struct config, audit_broken) },
	{ "log_format", SET_CHOICE, "text|json", 0, 0, 0, offsetof(struct config, log_format) },
	{ "metrics_listen", SET_OPT_STRING, NULL, 0, 0, 0, offsetof(struct config, metrics_listen) },
	{ "metrics_dek_refresh_s", SET_INT, NULL, 60, 1, 86400, offsetof(struct config, metrics_dek_refresh_s) },
	{ "reflection", SET_CHOICE, "authenticated|public|off", 0, 0, 0, offsetof(struct config, reflection) },
	{ "reflection_idle_s", SET_INT, NULL, 30, 1, 3600, offsetof(struct config, reflection_idle_s) },
	{ "key_provider", SET_CHOICE, "file|pkcs11", 0, 0, 0, offsetof(struct config, key_provider) },
	{ "pkcs11_module", SET_OPT_PATH, NULL, 0, 0, 0, offsetof(struct config, pkcs11_module) },
	{ "pkcs11_token_label", SET_OPT_STRING, NULL, 0, 0, 0, offsetof(struct config, pkcs11_token_label) },
	{ "pkcs11_pin_file", SET_OPT_PATH, NULL, 0, 0, 0, offsetof(struct config, pkcs11_pin_file) },
	{ "store_backend", SET_CHOICE, "lmdb|postgresql", 0, 0, 0, offsetof(struct config, store_backend) },
	{ "postgresql_conninfo", SET_OPT_STRING, NULL, 0, 0, 0, offsetof(struct config, postgresql_conninfo) },
	{ "postgresql_pool", SET_INT, NULL, 16, 1, 1024, offsetof(struct config, postgresql_pool) },
	{ "postgresql_connect_timeout_s", SET_INT, NULL, 30, 1, 3600, offsetof(struct config, postgresql_connect_timeout_s) },
	{ "replica_name", SET_OPT_STRING, NULL, 0, 0, 0, offsetof(struct config, replica_name) },
	{ "journal_dir", SET_OPT_PATH, NULL, 0, 0, 0, offsetof(struct config, journal_dir) },
};

#define fail(err, errlen, ...) \
	vault_errorf(err, errlen, VAULT_ERR_CONFIG, __VA_ARGS__)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The keys of a schema entry and of a purpose; anything else is a typo. */
static const char *const attr_keys[] = { "name", "type", "max_length",
	"sensitive", "min", "max", "values", "buckets", "feature", "k",
	"retain_days", "drop_identifier" };
static const char *const purpose_keys[] = { "name", "basis", "sale_or_share",
	"essential", "admt", "attributes" };

/* Every top-level name: the settings table, then the two lists. */
static int
check_top_names(config_t *lc, char *err, size_t errlen)
{
	const char *known[ARRAY_LEN(settings) + 2];
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_LEN(settings); i++)
		known[n++] = settings[i].name;
	known[n++] = "schema";
	known[n++] = "purposes";
	return cfgfile_check_names(config_root_setting(lc), known, n, "", err,
	    errlen);
}

static char *
resolve_path(const char *base, const char *p)
{
	char *out;

	if (p[0] == '/' || base == NULL)
		return strdup(p);
	if (asprintf(&out, "%s/%s", base, p) < 0)
		return NULL;
	return out;
}

/* True when s is one of choices ("a|b|c"). */
static bool
is_choice(const char *choices, const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || strchr(s, '|') != NULL)
		return false;
	for (const char *p = choices; p != NULL; p = strchr(p, '|')) {
		p += *p == '|';
		if (strncmp(p, s, n) == 0 && (p[n] == '|' || p[n] == '\0'))
			return true;
	}
	return false;
}

static int
load_settings(struct config *cfg, config_t *lc, const char *base, char *err,
    size_t errlen)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const struct setting *s = &settings[i];
		void *field = (char *)cfg + s->off;
		config_setting_t *cs = config_lookup(lc, s->name);
		const char *str = s->def_str;
		int n = s->def_int;

		if (cs != NULL) {
			int t = config_setting_type(cs);
			bool ok = (s->type == SET_INT && t == CONFIG_TYPE_INT) ||
			    (s->type == SET_BOOL && t == CONFIG_TYPE_BOOL) ||
			    ((s->type == SET_STRING || s->type == SET_PATH ||
			    s->type == SET_OPT_PATH || s->type == SET_CHOICE ||
			    s->type == SET_OPT_STRING) &&
			    t == CONFIG_TYPE_STRING);

			if (!ok)
				return fail(err, errlen, "line %d: '%s' has the wrong type",
				    config_setting_source_line(cs), s->name);
			if (s->type == SET_INT)
				n = config_setting_get_int(cs);
			else if (s->type == SET_BOOL)
				n = config_setting_get_bool(cs);
			else
				str = config_setting_get_string(cs);
		}
		if (s->type == SET_INT || s->type == SET_BOOL) {
			if (n < s->min || n > s->max)
				return fail(err, errlen, "'%s' must be between %d and %d",
				    s->name, s->min, s->max);
			if (s->type == SET_BOOL)
				*(bool *)field = n != 0;
			else
				*(int *)field = n;
			continue;
		}
		if ((s->type == SET_OPT_PATH || s->type == SET_OPT_STRING) &&
		    str == NULL)
			continue;
		if (s->type == SET_CHOICE) {
			if (cs != NULL && !is_choice(s->def_str, str))
				return fail(err, errlen, "line %d: '%s' must be one "
				    "of %s", config_setting_source_line(cs), s->name,
				    s->def_str);
			*(char **)field = strndup(str, cs != NULL ? strlen(str) :
			    strcspn(str, "|"));
			if (*(char **)field == NULL)
				return fail(err, errlen, "out of memory");
			continue;
		}
		if (str[0] == '\0')
			return fail(err, errlen, "'%s' must not be empty", s->name);
		*(char **)field = s->type != SET_STRING &&
		    s->type != SET_OPT_STRING ? resolve_path(base, str) :
		    strdup(str);
		if (*(char **)field == NULL)
			return fail(err, errlen, "out of memory");
	}
	return 0;
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= SCHEMA_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_'))
			return false;
	return true;
}

/* The feature kind an attribute type gets when the config names none. */
static enum feature_kind
default_feature(enum attr_type t, size_t n_edges)
{
	switch (t) {
	case ATTR_CATEGORY: return FEAT_CATEGORY;
	case ATTR_INT: return n_edges > 0 ? FEAT_BUCKET : FEAT_NONE;
	case ATTR_DATE: return FEAT_YEAR;
	case ATTR_BOOL: return FEAT_BOOL;
	default: return FEAT_NONE;
	}
}

static bool
feature_fits(enum feature_kind f, enum attr_type t)
{
	switch (f) {
	case FEAT_NONE: return true;
	case FEAT_CATEGORY: return t == ATTR_CATEGORY;
	case FEAT_BUCKET: return t == ATTR_INT;
	case FEAT_YEAR: case FEAT_AGE_BAND: return t == ATTR_DATE;
	case FEAT_BOOL: return t == ATTR_BOOL;
	}
	return false;
}

static int
load_feature(struct attr_def *a, config_setting_t *e, int default_k, char *err,
    size_t errlen)
{
	int line = config_setting_source_line(e), f, k = default_k;
	config_setting_t *edges = config_setting_lookup(e, "buckets");
	const char *kind = NULL;

	if (edges != NULL) {
		int n = config_setting_length(edges);

		if (!config_setting_is_array(edges) || n < 1 || n > SCHEMA_MAX_EDGES)
			return fail(err, errlen, "line %d: attribute '%s': buckets is "
			    "an array of 1..%d ascending integers", line, a->name,
			    SCHEMA_MAX_EDGES);
		for (int i = 0; i < n; i++) {
			config_setting_t *el = config_setting_get_elem(edges, (unsigned)i);

			a->edges[i] = config_setting_get_int64(el);
			if (i > 0 && a->edges[i] <= a->edges[i - 1])
				return fail(err, errlen, "line %d: attribute '%s': "
				    "buckets must be strictly ascending", line, a->name);
		}
		a->n_edges = (size_t)n;
	}
	if (config_setting_lookup_string(e, "feature", &kind)) {
		if ((f = schema_feature_parse(kind)) < 0)
			return fail(err, errlen, "line %d: attribute '%s': feature is "
			    "none, category, bucket, year, age_band or bool", line,
			    a->name);
		a->feature = (enum feature_kind)f;
	} else {
		a->feature = default_feature(a->type, a->n_edges);
	}
	if (!feature_fits(a->feature, a->type))
		return fail(err, errlen, "line %d: attribute '%s': feature '%s' "
		    "does not fit type %s", line, a->name,
		    schema_feature_name(a->feature), schema_type_name(a->type));
	if ((a->feature == FEAT_BUCKET || a->feature == FEAT_AGE_BAND) &&
	    a->n_edges == 0)
		return fail(err, errlen, "line %d: attribute '%s': feature '%s' "
		    "needs buckets", line, a->name, schema_feature_name(a->feature));
	config_setting_lookup_int(e, "k", &k);
	if (k < 1)
		return fail(err, errlen, "line %d: attribute '%s': k must be >= 1",
		    line, a->name);
	a->k = (uint32_t)k;
	return 0;
}

static int
load_attr(struct attr_def *a, config_setting_t *e, char *err, size_t errlen)
{
	const char *name = NULL, *type = NULL;
	int line = config_setting_source_line(e), max_len = 0, b = 0, t, r;
	int days;
	long long min = INT64_MIN, max = INT64_MAX;
	config_setting_t *vals;
	char where[SCHEMA_NAME_MAX + 16];

	if (!config_setting_lookup_string(e, "name", &name) || !valid_name(name))
		return fail(err, errlen, "line %d: schema entry needs a name of "
		    "lower-case letters, digits and '_' (at most %d)", line,
		    SCHEMA_NAME_MAX - 1);
	snprintf(a->name, sizeof(a->name), "%s", name);
	snprintf(where, sizeof(where), "attribute '%s'", name);
	if ((r = cfgfile_check_names(e, attr_keys, ARRAY_LEN(attr_keys), where,
	    err, errlen)) != 0)
		return r;
	if (!config_setting_lookup_string(e, "type", &type) ||
	    (t = schema_type_parse(type)) < 0)
		return fail(err, errlen, "line %d: attribute '%s' needs a type: "
		    "string, int, date, category or bool", line, name);
	a->type = (enum attr_type)t;
	if (!config_setting_lookup_int(e, "max_length", &max_len))
		max_len = a->type == ATTR_DATE ? 10 : a->type == ATTR_INT ? 20 :
		    a->type == ATTR_BOOL ? 5 : 256;
	if (max_len < 1 || max_len > SCHEMA_VALUE_MAX)
		return fail(err, errlen, "line %d: attribute '%s': max_length "
		    "must be 1..%d", line, name, SCHEMA_VALUE_MAX);
	a->max_length = (uint32_t)max_len;
	if (config_setting_lookup_bool(e, "sensitive", &b))
		a->sensitive = b != 0;
	if (config_setting_lookup_int(e, "retain_days", &days)) {
		if (days < 1 || days > SCHEMA_RETAIN_DAYS_MAX)
			return fail(err, errlen, "line %d: attribute '%s': "
			    "retain_days must be 1..%d (leave it out to keep "
			    "values until the consumer is deleted)", line, name,
			    SCHEMA_RETAIN_DAYS_MAX);
		a->retain_days = (uint32_t)days;
	}
	if (config_setting_lookup_string(e, "drop_identifier", &type)) {
		if ((a->drop = schema_drop_field_parse(type)) == DROP_F_NONE)
			return fail(err, errlen, "line %d: attribute '%s': "
			    "drop_identifier must be one of email, phone, maid, "
			    "ctv_id, vin, first_name, last_name, dob, zip", line,
			    name);
	}
	config_setting_lookup_int64(e, "min", &min);
	config_setting_lookup_int64(e, "max", &max);
	if (min > max)
		return fail(err, errlen, "line %d: attribute '%s': min > max",
		    line, name);
	a->min = min;
	a->max = max;
	if ((vals = config_setting_lookup(e, "values")) != NULL) {
		int n = config_setting_length(vals);

		if (a->type != ATTR_CATEGORY || !config_setting_is_array(vals) || n < 1)
			return fail(err, errlen, "line %d: attribute '%s': values "
			    "is a non-empty array, for categories only", line, name);
		if ((a->values = calloc((size_t)n, sizeof(char *))) == NULL)
			return fail(err, errlen, "out of memory");
		for (int i = 0; i < n; i++) {
			const char *v = config_setting_get_string_elem(vals, i);

			if (v == NULL || v[0] == '\0')
				return fail(err, errlen, "line %d: attribute '%s': "
				    "values must be non-empty strings", line, name);
			if ((a->values[i] = strdup(v)) == NULL)
				return fail(err, errlen, "out of memory");
			a->n_values++;
		}
	}
	return 0;
}

/* attributes = [...]: the features the purpose may use; absent: all. */
static int
load_purpose_attrs(struct purpose_def *p, const struct schema *s,
    config_setting_t *e, char *err, size_t errlen)
{
	config_setting_t *list = config_setting_lookup(e, "attributes");
	int line = config_setting_source_line(e);

	if (list == NULL) {
		p->all_attrs = true;
		return 0;
	}
	if (!config_setting_is_array(list))
		return fail(err, errlen, "line %d: purpose '%s': attributes is an "
		    "array of attribute names", line, p->name);
	for (int i = 0; i < config_setting_length(list); i++) {
		const char *name = config_setting_get_string_elem(list, i);
		int a = name ? schema_find_attr(s, name, strlen(name)) : -1;

		if (a < 0)
			return fail(err, errlen, "line %d: purpose '%s': attributes "
			    "names an unknown attribute", line, p->name);
		if (s->attrs[a].feature == FEAT_NONE)
			return fail(err, errlen, "line %d: purpose '%s': attribute "
			    "'%s' is never a feature", line, p->name, name);
		p->allowed[a] = true;
	}
	return 0;
}

static int
load_purpose(struct purpose_def *p, const struct schema *s,
    config_setting_t *e, char *err, size_t errlen)
{
	const char *name = NULL, *basis = NULL;
	int line = config_setting_source_line(e), b = 0, r;
	char where[SCHEMA_NAME_MAX + 16];

	if (!config_setting_lookup_string(e, "name", &name) || !valid_name(name))
		return fail(err, errlen, "line %d: purpose needs a name of "
		    "lower-case letters, digits and '_'", line);
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(where, sizeof(where), "purpose '%s'", name);
	if ((r = cfgfile_check_names(e, purpose_keys, ARRAY_LEN(purpose_keys),
	    where, err, errlen)) != 0)
		return r;
	if (!config_setting_lookup_string(e, "basis", &basis) ||
	    (strcmp(basis, "opt_in") != 0 && strcmp(basis, "opt_out") != 0))
		return fail(err, errlen, "line %d: purpose '%s' needs basis "
		    "\"opt_in\" or \"opt_out\"", line, name);
	p->opt_in = strcmp(basis, "opt_in") == 0;
	if (config_setting_lookup_bool(e, "sale_or_share", &b))
		p->sale_or_share = b != 0;
	if (config_setting_lookup_bool(e, "essential", &b))
		p->essential = b != 0;
	if (config_setting_lookup_bool(e, "admt", &b))
		p->admt = b != 0;
	if (p->admt && p->essential)
		return fail(err, errlen, "line %d: purpose '%s': an admt purpose "
		    "(automated decisions a consumer may opt out of) cannot be "
		    "essential", line, name);
	return load_purpose_attrs(p, s, e, err, errlen);
}

static int
load_schema(struct schema *s, config_t *lc, int default_k, char *err,
    size_t errlen)
{
	config_setting_t *attrs = config_lookup(lc, "schema");
	config_setting_t *purposes = config_lookup(lc, "purposes");
	int n, r;

	if (attrs == NULL || !config_setting_is_list(attrs) ||
	    (n = config_setting_length(attrs)) < 1 || n > SCHEMA_MAX_ATTRS)
		return fail(err, errlen, "'schema' must be a list of 1..%d "
		    "attributes", SCHEMA_MAX_ATTRS);
	if ((s->attrs = calloc((size_t)n, sizeof(*s->attrs))) == NULL)
		return fail(err, errlen, "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(attrs, (unsigned)i);

		/* Counted first: schema_free frees what a failed load left. */
		s->n_attrs++;
		if ((r = load_attr(&s->attrs[i], e, err, errlen)) != 0 ||
		    (r = load_feature(&s->attrs[i], e, default_k, err, errlen)) != 0)
			return r;
		if (schema_find_attr(s, s->attrs[i].name,
		    strlen(s->attrs[i].name)) != i)
			return fail(err, errlen, "attribute '%s' is defined twice",
			    s->attrs[i].name);
		if (s->attrs[i].drop != DROP_F_NONE &&
		    schema_drop_attr(s, s->attrs[i].drop) != i)
			return fail(err, errlen, "attribute '%s': another "
			    "attribute is drop_identifier \"%s\"",
			    s->attrs[i].name,
			    schema_drop_field_name(s->attrs[i].drop));
	}
	if (purposes == NULL || !config_setting_is_list(purposes) ||
	    (n = config_setting_length(purposes)) < 1)
		return fail(err, errlen, "'purposes' must be a non-empty list");
	if ((s->purposes = calloc((size_t)n, sizeof(*s->purposes))) == NULL)
		return fail(err, errlen, "out of memory");
	for (int i = 0; i < n; i++) {
		if ((r = load_purpose(&s->purposes[i], s, config_setting_get_elem(
		    purposes, (unsigned)i), err, errlen)) != 0)
			return r;
		s->n_purposes++;
		if (schema_find_purpose(s, s->purposes[i].name,
		    strlen(s->purposes[i].name)) != i)
			return fail(err, errlen, "purpose '%s' is defined twice",
			    s->purposes[i].name);
	}
	return 0;
}

/* The pkcs11 settings: all three with key_provider = "pkcs11", else none. */
static int
check_key_provider(const struct config *cfg, char *err, size_t errlen)
{
	int n = (cfg->pkcs11_module != NULL) +
	    (cfg->pkcs11_token_label != NULL) + (cfg->pkcs11_pin_file != NULL);

	if (strcmp(cfg->key_provider, "pkcs11") == 0 && n != 3)
		return fail(err, errlen, "key_provider = \"pkcs11\" needs "
		    "pkcs11_module, pkcs11_token_label and pkcs11_pin_file");
	if (strcmp(cfg->key_provider, "pkcs11") != 0 && n != 0)
		return fail(err, errlen, "pkcs11_module, pkcs11_token_label and "
		    "pkcs11_pin_file apply only with key_provider = \"pkcs11\"");
	return 0;
}

/* postgresql_conninfo: set exactly when store_backend = "postgresql". */
static int
check_store_backend(const struct config *cfg, char *err, size_t errlen)
{
	bool pg = strcmp(cfg->store_backend, "postgresql") == 0;

	if (pg && cfg->postgresql_conninfo == NULL)
		return fail(err, errlen, "store_backend = \"postgresql\" needs "
		    "postgresql_conninfo");
	if (!pg && cfg->postgresql_conninfo != NULL)
		return fail(err, errlen, "postgresql_conninfo applies only with "
		    "store_backend = \"postgresql\"");
	return 0;
}

int
config_load(struct config **out, const char *path, char *err, size_t errlen)
{
	struct config *cfg = NULL;
	char *copy = NULL, *base;
	config_t lc;
	int r, n_tls;

	*out = NULL;
	config_init(&lc);
	if ((r = cfgfile_read(&lc, path, err, errlen)) != 0)
		goto out;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (copy = strdup(path)) == NULL) {
		r = fail(err, errlen, "out of memory");
		goto out;
	}
	base = dirname(copy);
	if ((r = check_top_names(&lc, err, errlen)) != 0 ||
	    (r = load_settings(cfg, &lc, base, err, errlen)) != 0 ||
	    (r = load_schema(&cfg->schema, &lc, cfg->suppression_k, err,
	    errlen)) != 0)
		goto out;
	n_tls = (cfg->tls_cert != NULL) + (cfg->tls_key != NULL) +
	    (cfg->tls_client_ca != NULL);
	if (n_tls != 0 && n_tls != 3) {
		r = fail(err, errlen, "tls_cert, tls_key and tls_client_ca go together");
		goto out;
	}
	if ((r = check_key_provider(cfg, err, errlen)) != 0 ||
	    (r = check_store_backend(cfg, err, errlen)) != 0 ||
	    (r = config_check_replica(cfg, err, errlen)) != 0)
		goto out;
	if (cfg->insecure_plaintext && !config_listen_is_loopback(cfg->listen)) {
		r = fail(err, errlen, "insecure_plaintext is allowed only on a "
		    "loopback listen address");
		goto out;
	}
	*out = cfg;
	cfg = NULL;
	r = 0;
out:
	if (r != 0 && cfg != NULL) {
		/* Prefix the file name so the operator knows where to look. */
		char tmp[512];

		snprintf(tmp, sizeof(tmp), "%s", err);
		if (strncmp(tmp, path, strlen(path)) != 0)
			snprintf(err, errlen, "%s: %s", path, tmp);
	}
	config_free(cfg);
	free(copy);
	config_destroy(&lc);
	return r;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (settings[i].type != SET_INT && settings[i].type != SET_BOOL)
			free(*(char **)((char *)cfg + settings[i].off));
	schema_free(&cfg->schema);
	free(cfg);
}

void
config_store_params(const struct config *cfg, struct store_params *p)
{
	*p = (struct store_params){
		.kind = strcmp(cfg->store_backend, "postgresql") == 0 ?
		    STORE_KIND_POSTGRESQL : STORE_KIND_LMDB,
		.dir = cfg->store_dir,
		.map_size = (size_t)cfg->map_size_mb << 20,
		.conninfo = cfg->postgresql_conninfo,
		.pool_size = (unsigned)cfg->postgresql_pool,
		.connect_timeout_s = (unsigned)cfg->postgresql_connect_timeout_s,
	};
}

bool
config_listen_is_loopback(const char *listen)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	const char *h = listen;
	size_t n;
	struct in_addr a4;
	struct in6_addr a6;

	if (strncmp(listen, "unix:", 5) == 0)
		return true;
	if (colon == NULL)
		return false;
	n = (size_t)(colon - listen);
	if (n > 1 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, h, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
same_attr(const struct attr_def *a, const struct attr_def *b)
{
	if (strcmp(a->name, b->name) != 0 || a->type != b->type ||
	    a->max_length != b->max_length || a->sensitive != b->sensitive ||
	    a->min != b->min || a->max != b->max || a->feature != b->feature ||
	    a->k != b->k || a->n_values != b->n_values || a->n_edges != b->n_edges ||
	    a->retain_days != b->retain_days || a->drop != b->drop ||
	    memcmp(a->edges, b->edges, a->n_edges * sizeof(a->edges[0])) != 0)
		return false;
	for (size_t i = 0; i < a->n_values; i++)
		if (strcmp(a->values[i], b->values[i]) != 0)
			return false;
	return true;
}

static bool
same_purpose(const struct purpose_def *a, const struct purpose_def *b)
{
	return strcmp(a->name, b->name) == 0 && a->opt_in == b->opt_in &&
	    a->sale_or_share == b->sale_or_share && a->essential == b->essential &&
	    a->admt == b->admt && a->all_attrs == b->all_attrs &&
	    memcmp(a->allowed, b->allowed, sizeof(a->allowed)) == 0;
}

void
config_diff(const struct config *a, const struct config *b,
    void (*changed)(const char *name, void *arg), void *arg)
{
	bool same;

	for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
		const struct setting *s = &settings[i];
		const void *fa = (const char *)a + s->off, *fb = (const char *)b + s->off;

		if (s->type == SET_INT)
			same = *(const int *)fa == *(const int *)fb;
		else if (s->type == SET_BOOL)
			same = *(const bool *)fa == *(const bool *)fb;
		else
			same = same_str(*(char *const *)fa, *(char *const *)fb);
		if (!same)
			changed(s->name, arg);
	}
	same = a->schema.n_attrs == b->schema.n_attrs;
	for (size_t i = 0; same && i < a->schema.n_attrs; i++)
		same = same_attr(&a->schema.attrs[i], &b->schema.attrs[i]);
	if (!same)
		changed("schema", arg);
	same = a->schema.n_purposes == b->schema.n_purposes;
	for (size_t i = 0; same && i < a->schema.n_purposes; i++)
		same = same_purpose(&a->schema.purposes[i], &b->schema.purposes[i]);
	if (!same)
		changed("purposes", arg);
}
