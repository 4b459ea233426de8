/*
 * The config loader (conf/config.h): config_load reads a file by path, so
 * each input is written to a scratch file first. A config that loads must
 * hold a schema that the rest of the daemon can rely on: attribute and
 * purpose names found by their own lookup, bounds in order, edges sorted.
 */
#include <string.h>

#include "conf/config.h"
#include "fuzz_common.h"

static void
schema_ok(const struct schema *s)
{
	FUZZ_CHECK(s->n_attrs >= 1 && s->n_attrs <= SCHEMA_MAX_ATTRS);
	FUZZ_CHECK(s->n_purposes >= 1);
	for (size_t i = 0; i < s->n_attrs; i++) {
		const struct attr_def *a = &s->attrs[i];

		FUZZ_CHECK(strnlen(a->name, SCHEMA_NAME_MAX) < SCHEMA_NAME_MAX);
		FUZZ_CHECK(schema_find_attr(s, a->name, strlen(a->name)) == (int)i);
		FUZZ_CHECK(a->max_length <= SCHEMA_VALUE_MAX);
		FUZZ_CHECK(a->n_edges <= SCHEMA_MAX_EDGES);
		for (size_t e = 1; e < a->n_edges; e++)
			FUZZ_CHECK(a->edges[e - 1] < a->edges[e]);
		if (a->type == ATTR_INT)
			FUZZ_CHECK(a->min <= a->max);
		/* The tokenizer parses values by feature (tokenize.h). */
		FUZZ_CHECK(a->feature == FEAT_NONE ||
		    (a->feature == FEAT_CATEGORY && a->type == ATTR_CATEGORY) ||
		    (a->feature == FEAT_BUCKET && a->type == ATTR_INT) ||
		    ((a->feature == FEAT_YEAR || a->feature == FEAT_AGE_BAND) &&
		    a->type == ATTR_DATE) ||
		    (a->feature == FEAT_BOOL && a->type == ATTR_BOOL));
		if (a->feature == FEAT_BUCKET || a->feature == FEAT_AGE_BAND)
			FUZZ_CHECK(a->n_edges > 0);
		FUZZ_CHECK(a->k >= 1);
		for (size_t v = 0; v < a->n_values; v++)
			FUZZ_CHECK(a->values[v] != NULL && a->values[v][0] != '\0');
		(void)schema_type_name(a->type);
		(void)schema_feature_name(a->feature);
	}
	for (size_t p = 0; p < s->n_purposes; p++) {
		FUZZ_CHECK(schema_find_purpose(s, s->purposes[p].name,
		    strlen(s->purposes[p].name)) == (int)p);
		for (size_t a = 0; a < s->n_attrs; a++)
			(void)schema_purpose_allows(s, (int)p, (int)a);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	char err[512];
	const char *path;

	fuzz_init();
	/* libconfig's @include would read other files: not this decoder. */
	if (size > 64 * 1024 || memmem(data, size, "@include", 8) != NULL)
		return 0;
	path = fuzz_file("vaultd.conf", data, size);
	err[0] = '\0';
	if (config_load(&cfg, path, err, sizeof(err)) == 0) {
		FUZZ_CHECK(cfg != NULL && cfg->listen != NULL);
		schema_ok(&cfg->schema);
		(void)config_listen_is_loopback(cfg->listen);
		config_free(cfg);
	} else {
		FUZZ_CHECK(cfg == NULL && err[0] != '\0');
	}
	return 0;
}
