/*
 * The reflection index (reflect_index.h): a walk over the wire form of
 * descriptor.proto's messages, reading only the fields that name things.
 * Field numbers are those of google/protobuf/descriptor.proto.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/reflect_index.h"
#include "util/pbwire.h"

/* FileDescriptorSet */
#define SET_FILE 1
/* FileDescriptorProto */
#define FILE_NAME 1
#define FILE_PACKAGE 2
#define FILE_DEPENDENCY 3
#define FILE_MESSAGE 4
#define FILE_ENUM 5
#define FILE_SERVICE 6
#define FILE_EXTENSION 7
/* DescriptorProto */
#define MSG_NAME 1
#define MSG_FIELD 2
#define MSG_NESTED 3
#define MSG_ENUM 4
#define MSG_EXTENSION 6
#define MSG_ONEOF 8
/* EnumDescriptorProto, ServiceDescriptorProto: their values, methods */
#define ENUM_VALUE 2
#define SERVICE_METHOD 2
/* Every other descriptor names itself in field 1. */
#define ANY_NAME 1

#define MAX_DEPTH 32		/* message nesting */
#define MAX_FILES 256
#define MAX_DEPS 64

struct rfile {
	const uint8_t *data;
	size_t len;
	char *name, *package;
	char *dep_names[MAX_DEPS];
	int deps[MAX_DEPS];
	size_t n_deps;
};

struct rsym {
	char *name;
	int file;
	enum reflect_kind kind;
};

struct reflect_index {
	struct rfile *files;
	size_t n_files;
	struct rsym *syms;
	size_t n_syms, cap_syms;
};

struct field {
	uint32_t num;
	unsigned type;		/* 0 varint, 1 fixed64, 2 bytes, 5 fixed32 */
	const uint8_t *p;	/* type 2: the bytes */
	size_t n;
};

/* The next field at *p: 1 read, 0 at the end, or VAULT_ERR_CONFIG. */
static int
next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
	uint64_t key, v;

	if (*p == end)
		return 0;
	if (!pbwire_varint(p, end, &key) || (key >> 3) == 0 ||
	    (key >> 3) > UINT32_MAX)
		return VAULT_ERR_CONFIG;
	f->num = (uint32_t)(key >> 3);
	f->type = (unsigned)(key & 7);
	f->p = NULL;
	f->n = 0;
	switch (f->type) {
	case 0:
		return pbwire_varint(p, end, &v) ? 1 : VAULT_ERR_CONFIG;
	case 1:
	case 5:
		v = f->type == 1 ? 8 : 4;
		break;
	case 2:
		if (!pbwire_varint(p, end, &v))
			return VAULT_ERR_CONFIG;
		break;
	default:		/* groups: not in descriptors */
		return VAULT_ERR_CONFIG;
	}
	if (v > (uint64_t)(end - *p))
		return VAULT_ERR_CONFIG;
	f->p = *p;
	f->n = (size_t)v;
	*p += v;
	return 1;
}

/* A copy of a name field: no NUL inside, not empty. */
static int
dup_name(const struct field *f, char **out)
{
	if (f->type != 2 || f->n == 0 || memchr(f->p, '\0', f->n) != NULL)
		return VAULT_ERR_CONFIG;
	if ((*out = strndup((const char *)f->p, f->n)) == NULL)
		return VAULT_ERR_NOMEM;
	return 0;
}

/* The name (field 1) of the descriptor p[0..n). */
static int
name_of(const uint8_t *p, size_t n, char **out)
{
	const uint8_t *end = p + n;
	struct field f;
	int r;

	*out = NULL;
	while ((r = next_field(&p, end, &f)) == 1)
		if (f.num == ANY_NAME)
			return dup_name(&f, out);
	return r < 0 ? r : VAULT_ERR_CONFIG;	/* every descriptor has a name */
}

/* Adds scope.name (or name at the top) as a symbol of file. */
static int
add_symbol(struct reflect_index *ix, const char *scope, const char *name,
    int file, enum reflect_kind kind, char **full)
{
	struct rsym *s;
	char *n;

	if (asprintf(&n, "%s%s%s", scope, scope[0] ? "." : "", name) < 0)
		return VAULT_ERR_NOMEM;
	if (ix->n_syms == ix->cap_syms) {
		size_t cap = ix->cap_syms ? ix->cap_syms * 2 : 256;

		if ((s = realloc(ix->syms, cap * sizeof(*s))) == NULL) {
			free(n);
			return VAULT_ERR_NOMEM;
		}
		ix->syms = s;
		ix->cap_syms = cap;
	}
	ix->syms[ix->n_syms++] = (struct rsym){ n, file, kind };
	if (full != NULL)
		*full = n;
	return 0;
}

/* Adds the symbol named by field 1 of the descriptor in f. */
static int
add_named(struct reflect_index *ix, const char *scope, const struct field *f,
    int file, enum reflect_kind kind, char **full)
{
	char *name = NULL;
	int r;

	if (f->type != 2)
		return VAULT_ERR_CONFIG;
	if ((r = name_of(f->p, f->n, &name)) == 0)
		r = add_symbol(ix, scope, name, file, kind, full);
	free(name);
	return r;
}

/* An enum's values live in the enum's enclosing scope, as in C++. */
static int
walk_enum(struct reflect_index *ix, const char *scope, const struct field *e,
    int file)
{
	const uint8_t *p = e->p, *end = e->p + e->n;
	struct field f;
	int r;

	if ((r = add_named(ix, scope, e, file, REFLECT_ENUM, NULL)) != 0)
		return r;
	while ((r = next_field(&p, end, &f)) == 1)
		if (f.num == ENUM_VALUE &&
		    (r = add_named(ix, scope, &f, file, REFLECT_ENUM_VALUE, NULL)) != 0)
			return r;
	return r;
}

static int
walk_message(struct reflect_index *ix, const char *scope,
    const struct field *m, int file, int depth)
{
	const uint8_t *p = m->p, *end = m->p + m->n;
	struct field f;
	char *full;
	int r;

	if (m->type != 2 || depth > MAX_DEPTH)
		return VAULT_ERR_CONFIG;
	if ((r = add_named(ix, scope, m, file, REFLECT_MESSAGE, &full)) != 0)
		return r;
	while (r == 0 && (r = next_field(&p, end, &f)) == 1) {
		r = 0;
		switch (f.num) {
		case MSG_FIELD: case MSG_EXTENSION: case MSG_ONEOF:
			r = add_named(ix, full, &f, file, REFLECT_FIELD, NULL);
			break;
		case MSG_NESTED:
			r = walk_message(ix, full, &f, file, depth + 1);
			break;
		case MSG_ENUM:
			r = f.type == 2 ? walk_enum(ix, full, &f, file) :
			    VAULT_ERR_CONFIG;
			break;
		}
	}
	return r;
}

static int
walk_service(struct reflect_index *ix, const char *scope,
    const struct field *s, int file)
{
	const uint8_t *p = s->p, *end = s->p + s->n;
	struct field f;
	char *full;
	int r;

	if ((r = add_named(ix, scope, s, file, REFLECT_SERVICE, &full)) != 0)
		return r;
	while ((r = next_field(&p, end, &f)) == 1)
		if (f.num == SERVICE_METHOD &&
		    (r = add_named(ix, full, &f, file, REFLECT_METHOD, NULL)) != 0)
			return r;
	return r;
}

/* First pass over a file: its name, package and imports. */
static int
read_header(struct rfile *rf)
{
	const uint8_t *p = rf->data, *end = rf->data + rf->len;
	struct field f;
	int r;

	while ((r = next_field(&p, end, &f)) == 1) {
		r = 0;
		if (f.num == FILE_NAME && rf->name == NULL)
			r = dup_name(&f, &rf->name);
		else if (f.num == FILE_PACKAGE && rf->package == NULL)
			r = dup_name(&f, &rf->package);
		else if (f.num == FILE_DEPENDENCY)
			r = rf->n_deps < MAX_DEPS ?
			    dup_name(&f, &rf->dep_names[rf->n_deps++]) :
			    VAULT_ERR_CONFIG;
		if (r != 0)
			return r;
	}
	if (r == 0 && rf->name == NULL)
		return VAULT_ERR_CONFIG;
	if (r == 0 && rf->package == NULL && (rf->package = strdup("")) == NULL)
		return VAULT_ERR_NOMEM;
	return r;
}

/* Second pass: the symbols a file defines, under its package. */
static int
read_symbols(struct reflect_index *ix, int file)
{
	const struct rfile *rf = &ix->files[file];
	const uint8_t *p = rf->data, *end = rf->data + rf->len;
	struct field f;
	int r;

	while ((r = next_field(&p, end, &f)) == 1) {
		r = 0;
		switch (f.num) {
		case FILE_MESSAGE:
			r = walk_message(ix, rf->package, &f, file, 0);
			break;
		case FILE_ENUM:
			r = f.type == 2 ? walk_enum(ix, rf->package, &f, file) :
			    VAULT_ERR_CONFIG;
			break;
		case FILE_SERVICE:
			r = f.type == 2 ? walk_service(ix, rf->package, &f, file) :
			    VAULT_ERR_CONFIG;
			break;
		case FILE_EXTENSION:
			r = add_named(ix, rf->package, &f, file, REFLECT_FIELD, NULL);
			break;
		}
		if (r != 0)
			return r;
	}
	return r;
}

/* Imports by file number; --include_imports put every one in the set. */
static int
link_deps(struct reflect_index *ix)
{
	for (size_t i = 0; i < ix->n_files; i++) {
		struct rfile *rf = &ix->files[i];

		for (size_t d = 0; d < rf->n_deps; d++)
			if ((rf->deps[d] = reflect_file_by_name(ix,
			    rf->dep_names[d])) < 0)
				return VAULT_ERR_CONFIG;
	}
	return 0;
}

static int
split_files(struct reflect_index *ix, const uint8_t *set, size_t len)
{
	const uint8_t *p = set, *end = set + len;
	struct field f;
	int r;

	if ((ix->files = calloc(MAX_FILES, sizeof(*ix->files))) == NULL)
		return VAULT_ERR_NOMEM;
	while ((r = next_field(&p, end, &f)) == 1) {
		if (f.num != SET_FILE || f.type != 2 || ix->n_files == MAX_FILES)
			return VAULT_ERR_CONFIG;
		ix->files[ix->n_files].data = f.p;
		ix->files[ix->n_files].len = f.n;
		if ((r = read_header(&ix->files[ix->n_files++])) != 0)
			return r;
	}
	return r;
}

int
reflect_index_load(struct reflect_index **out, const uint8_t *set, size_t len)
{
	struct reflect_index *ix;
	int r;

	*out = NULL;
	if ((ix = calloc(1, sizeof(*ix))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = split_files(ix, set, len)) != 0 || (r = link_deps(ix)) != 0)
		goto out;
	for (size_t i = 0; i < ix->n_files && r == 0; i++)
		r = read_symbols(ix, (int)i);
	if (r == 0 && ix->n_files == 0)
		r = VAULT_ERR_CONFIG;
out:
	if (r != 0) {
		reflect_index_free(ix);
		return r;
	}
	*out = ix;
	return 0;
}

void
reflect_index_free(struct reflect_index *ix)
{
	if (ix == NULL)
		return;
	for (size_t i = 0; i < ix->n_files; i++) {
		free(ix->files[i].name);
		free(ix->files[i].package);
		for (size_t d = 0; d < ix->files[i].n_deps; d++)
			free(ix->files[i].dep_names[d]);
	}
	for (size_t i = 0; i < ix->n_syms; i++)
		free(ix->syms[i].name);
	free(ix->files);
	free(ix->syms);
	free(ix);
}

int
reflect_file_by_name(const struct reflect_index *ix, const char *name)
{
	for (size_t i = 0; i < ix->n_files; i++)
		if (strcmp(ix->files[i].name, name) == 0)
			return (int)i;
	return -1;
}

int
reflect_file_by_symbol(const struct reflect_index *ix, const char *symbol,
    enum reflect_kind *kind)
{
	for (size_t i = 0; i < ix->n_syms; i++)
		if (strcmp(ix->syms[i].name, symbol) == 0) {
			if (kind != NULL)
				*kind = ix->syms[i].kind;
			return ix->syms[i].file;
		}
	return -1;
}

static bool
listed(const int *files, size_t n, int file)
{
	for (size_t i = 0; i < n; i++)
		if (files[i] == file)
			return true;
	return false;
}

size_t
reflect_closure(const struct reflect_index *ix, int file, int *out, size_t max)
{
	size_t n = 0;

	if (file < 0 || (size_t)file >= ix->n_files || max == 0)
		return 0;
	out[n++] = file;
	/* Breadth first over the list itself: each file once, the asked first. */
	for (size_t i = 0; i < n; i++) {
		const struct rfile *rf = &ix->files[out[i]];

		for (size_t d = 0; d < rf->n_deps && n < max; d++)
			if (!listed(out, n, rf->deps[d]))
				out[n++] = rf->deps[d];
	}
	return n;
}

void
reflect_file_bytes(const struct reflect_index *ix, int file,
    const uint8_t **data, size_t *len)
{
	*data = ix->files[file].data;
	*len = ix->files[file].len;
}

size_t
reflect_n_files(const struct reflect_index *ix)
{
	return ix->n_files;
}
