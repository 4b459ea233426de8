#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf/schema.h"
#include "util/utf8.h"

static const char *const type_names[] = {
	[ATTR_STRING] = "string", [ATTR_INT] = "int", [ATTR_DATE] = "date",
	[ATTR_CATEGORY] = "category", [ATTR_BOOL] = "bool",
};

int
schema_type_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(type_names) / sizeof(type_names[0])); i++)
		if (strcmp(name, type_names[i]) == 0)
			return i;
	return -1;
}

const char *
schema_type_name(enum attr_type t)
{
	return type_names[t];
}

static const char *const feature_names[] = {
	[FEAT_NONE] = "none", [FEAT_CATEGORY] = "category",
	[FEAT_BUCKET] = "bucket", [FEAT_YEAR] = "year",
	[FEAT_AGE_BAND] = "age_band", [FEAT_BOOL] = "bool",
};

int
schema_feature_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(feature_names) / sizeof(feature_names[0])); i++)
		if (strcmp(name, feature_names[i]) == 0)
			return i;
	return -1;
}

const char *
schema_feature_name(enum feature_kind k)
{
	return feature_names[k];
}

bool
schema_purpose_allows(const struct schema *s, int p, int a)
{
	return s->attrs[a].feature != FEAT_NONE &&
	    (s->purposes[p].all_attrs || s->purposes[p].allowed[a]);
}

static bool
name_equals(const char *stored, const char *name, size_t len)
{
	return strlen(stored) == len && memcmp(stored, name, len) == 0;
}

int
schema_find_attr(const struct schema *s, const char *name, size_t len)
{
	for (size_t i = 0; i < s->n_attrs; i++)
		if (name_equals(s->attrs[i].name, name, len))
			return (int)i;
	return -1;
}

int
schema_find_purpose(const struct schema *s, const char *name, size_t len)
{
	for (size_t i = 0; i < s->n_purposes; i++)
		if (name_equals(s->purposes[i].name, name, len))
			return (int)i;
	return -1;
}

/* Strict UTF-8 without NUL; C0 controls and DEL only if allow_control. */
static bool
valid_utf8(const unsigned char *p, size_t len, bool allow_control)
{
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if ((n = utf8_char(p + i, len - i, &cp)) == 0 || cp == 0 ||
		    (!allow_control && (cp < 0x20 || cp == 0x7f)))
			return false;
		i += n;
	}
	return true;
}

static const char *
check_int(const struct attr_def *def, const char *v, size_t len)
{
	char buf[32];
	char *end;
	long long n;

	if (len == 0 || len >= sizeof(buf))
		return "not an integer";
	memcpy(buf, v, len);
	buf[len] = '\0';
	if (!(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
		return "not an integer";
	errno = 0;
	n = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return "not an integer";
	if (n < def->min || n > def->max)
		return "integer out of the attribute's range";
	return NULL;
}

static bool
leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* YYYY-MM-DD, a real calendar date. */
static const char *
check_date(const char *v, size_t len)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	if (len != 10 || v[4] != '-' || v[7] != '-')
		return "not a date (YYYY-MM-DD)";
	for (size_t i = 0; i < len; i++)
		if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9'))
			return "not a date (YYYY-MM-DD)";
	y = (v[0] - '0') * 1000 + (v[1] - '0') * 100 + (v[2] - '0') * 10 + v[3] - '0';
	m = (v[5] - '0') * 10 + v[6] - '0';
	d = (v[8] - '0') * 10 + v[9] - '0';
	if (y < 1 || m < 1 || m > 12 || d < 1 ||
	    d > mdays[m - 1] + (m == 2 && leap(y)))
		return "not a valid calendar date";
	return NULL;
}

const char *
schema_check_value(const struct attr_def *def, const char *v, size_t len)
{
	if (len > def->max_length)
		return "value longer than the attribute's max_length";
	if (!valid_utf8((const unsigned char *)v, len, def->type == ATTR_STRING))
		return "value is not valid UTF-8 text";
	switch (def->type) {
	case ATTR_STRING:
		return NULL;
	case ATTR_INT:
		return check_int(def, v, len);
	case ATTR_DATE:
		return check_date(v, len);
	case ATTR_BOOL:
		if ((len == 4 && memcmp(v, "true", 4) == 0) ||
		    (len == 5 && memcmp(v, "false", 5) == 0))
			return NULL;
		return "not a bool (true or false)";
	case ATTR_CATEGORY:
		if (len == 0)
			return "empty category";
		if (def->values == NULL)
			return NULL;
		for (size_t i = 0; i < def->n_values; i++)
			if (name_equals(def->values[i], v, len))
				return NULL;
		return "not one of the attribute's categories";
	}
	return "unknown attribute type";
}

const char *
schema_check_consumer_id(const char *id, size_t len, size_t max_len)
{
	if (len == 0)
		return "must not be empty";
	if (len > max_len)
		return "longer than the maximum consumer id length";
	if (!valid_utf8((const unsigned char *)id, len, false))
		return "must be UTF-8 text without control characters";
	return NULL;
}

void
schema_free(struct schema *s)
{
	for (size_t i = 0; i < s->n_attrs; i++) {
		for (size_t j = 0; j < s->attrs[i].n_values; j++)
			free(s->attrs[i].values[j]);
		free(s->attrs[i].values);
	}
	free(s->attrs);
	free(s->purposes);
	memset(s, 0, sizeof(*s));
}

static const char *const drop_names[DROP_FIELDS] = {
	[DROP_F_EMAIL] = "email", [DROP_F_PHONE] = "phone",
	[DROP_F_MAID] = "maid", [DROP_F_CTV_ID] = "ctv_id",
	[DROP_F_VIN] = "vin", [DROP_F_FIRST_NAME] = "first_name",
	[DROP_F_LAST_NAME] = "last_name", [DROP_F_DOB] = "dob",
	[DROP_F_ZIP] = "zip",
};

enum drop_field
schema_drop_field_parse(const char *name)
{
	for (int f = DROP_F_NONE + 1; f < DROP_FIELDS; f++)
		if (strcmp(name, drop_names[f]) == 0)
			return (enum drop_field)f;
	return DROP_F_NONE;
}

const char *
schema_drop_field_name(enum drop_field f)
{
	return f > DROP_F_NONE && f < DROP_FIELDS ? drop_names[f] : "";
}

int
schema_drop_attr(const struct schema *s, enum drop_field f)
{
	for (size_t a = 0; a < s->n_attrs; a++)
		if (s->attrs[a].drop == f)
			return (int)a;
	return -1;
}

#define DAY_MS 86400000ULL

uint64_t
schema_expires_ms(const struct schema *s, int attr, uint64_t updated_ms)
{
	uint32_t days;

	if (attr < 0 || (size_t)attr >= s->n_attrs ||
	    (days = s->attrs[attr].retain_days) == 0)
		return 0;
	return updated_ms + days * DAY_MS;
}

bool
schema_expired(const struct schema *s, int attr, uint64_t updated_ms,
    uint64_t now_ms)
{
	uint64_t at = schema_expires_ms(s, attr, updated_ms);

	return at != 0 && at <= now_ms;
}

bool
schema_retains(const struct schema *s)
{
	for (size_t a = 0; a < s->n_attrs; a++)
		if (s->attrs[a].retain_days != 0)
			return true;
	return false;
}
