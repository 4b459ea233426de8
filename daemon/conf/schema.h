/*
 * The attribute schema and the purposes, both read from the config, and the
 * checks every incoming value must pass before anything is written.
 */
#ifndef VAULT_SCHEMA_H
#define VAULT_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHEMA_MAX_ATTRS 256
#define SCHEMA_NAME_MAX 64
#define SCHEMA_VALUE_MAX 4096

enum attr_type { ATTR_STRING, ATTR_INT, ATTR_DATE, ATTR_CATEGORY, ATTR_BOOL };

/* How an attribute becomes an ML feature token (see tokenize.h). */
enum feature_kind {
	FEAT_NONE,		/* never a feature (free text) */
	FEAT_CATEGORY,		/* keyed 64-bit token, rare values suppressed */
	FEAT_BUCKET,		/* int: 1 + bucket index over edges */
	FEAT_YEAR,		/* date: its year */
	FEAT_AGE_BAND,		/* date: 1 + bucket index over whole years since */
	FEAT_BOOL,		/* 1 false, 2 true */
};

#define SCHEMA_MAX_EDGES 64

/*
 * Which identifier of California's DROP lists an attribute holds (its
 * drop_identifier; engine/drop.h standardizes and hashes them).
 */
enum drop_field {
	DROP_F_NONE,
	DROP_F_EMAIL,
	DROP_F_PHONE,
	DROP_F_MAID,
	DROP_F_CTV_ID,
	DROP_F_VIN,
	DROP_F_FIRST_NAME,
	DROP_F_LAST_NAME,
	DROP_F_DOB,
	DROP_F_ZIP,
	DROP_FIELDS
};
#define SCHEMA_RETAIN_DAYS_MAX 36500

struct attr_def {
	char name[SCHEMA_NAME_MAX];
	enum attr_type type;
	uint32_t max_length;		/* bytes */
	bool sensitive;			/* CCPA sensitive personal information */
	int64_t min, max;		/* ATTR_INT bounds */
	char **values;			/* ATTR_CATEGORY allowed values, or NULL */
	size_t n_values;
	enum feature_kind feature;
	int64_t edges[SCHEMA_MAX_EDGES];	/* FEAT_BUCKET, FEAT_AGE_BAND */
	size_t n_edges;
	uint32_t k;			/* FEAT_CATEGORY: suppress values held by fewer */
	uint32_t retain_days;		/* 0: kept; else expires this long after
					   its last write (engine/retention.h) */
	enum drop_field drop;		/* DROP_F_NONE: not a DROP identifier */
};

struct purpose_def {
	char name[SCHEMA_NAME_MAX];
	bool opt_in;			/* excluded until consent is granted */
	bool sale_or_share;
	bool essential;			/* providing the service itself: sensitive
					   attributes stay usable when limited */
	bool admt;			/* automated decision-making with a
					   significant effect: opt_out_admt
					   excludes the consumer */
	bool all_attrs;			/* no attribute list: every feature */
	bool allowed[SCHEMA_MAX_ATTRS];	/* the attributes the purpose may use */
};

struct schema {
	struct attr_def *attrs;
	size_t n_attrs;
	struct purpose_def *purposes;
	size_t n_purposes;
};

/*
 * When a value of attribute attr written at updated_ms expires under its
 * retain_days (0: never; engine/retention.h), and whether it has at now_ms.
 */
uint64_t schema_expires_ms(const struct schema *s, int attr,
    uint64_t updated_ms);
bool schema_expired(const struct schema *s, int attr, uint64_t updated_ms,
    uint64_t now_ms);
/* Whether any attribute of s has retain_days. */
bool schema_retains(const struct schema *s);

/* The DROP field named name ("email", "zip", ...), or DROP_F_NONE. */
enum drop_field schema_drop_field_parse(const char *name);
const char *schema_drop_field_name(enum drop_field f);
/* The attribute holding field f, or -1. */
int schema_drop_attr(const struct schema *s, enum drop_field f);

/* Index of the attribute or purpose named name (len bytes), or -1. */
int schema_find_attr(const struct schema *s, const char *name, size_t len);
int schema_find_purpose(const struct schema *s, const char *name, size_t len);

/* "string", "int", ... to a type; -1 when unknown. */
int schema_type_parse(const char *name);
const char *schema_type_name(enum attr_type t);

/* "category", "bucket", ... to a feature kind; -1 when unknown. */
int schema_feature_parse(const char *name);
const char *schema_feature_name(enum feature_kind k);

/* True when purpose p may use attribute a. */
bool schema_purpose_allows(const struct schema *s, int p, int a);

/*
 * Checks value (len bytes) against def. Returns NULL when it is valid, or a
 * static reason that never quotes the value.
 */
const char *schema_check_value(const struct attr_def *def, const char *value,
    size_t len);

/* Checks a consumer id: 1..max_len bytes, UTF-8, no control characters. */
const char *schema_check_consumer_id(const char *id, size_t len,
    size_t max_len);

void schema_free(struct schema *s);

#endif
