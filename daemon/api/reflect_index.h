/*
 * The descriptors server reflection serves: a serialized
 * google.protobuf.FileDescriptorSet (protoc --descriptor_set_out
 * --include_imports, embedded at build time), split into its files, with
 * every fully qualified symbol each file defines: packages' messages (and
 * their fields, oneofs, nested types), enums and their values, services and
 * their methods. The file bytes are served as they are; nothing here
 * allocates per request.
 *
 * The set is the build's own output, yet the walk trusts no length in it:
 * a malformed set is refused with VAULT_ERR_CONFIG, never read past.
 */
#ifndef VAULT_REFLECT_INDEX_H
#define VAULT_REFLECT_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

enum reflect_kind {
	REFLECT_MESSAGE, REFLECT_FIELD, REFLECT_ENUM, REFLECT_ENUM_VALUE,
	REFLECT_SERVICE, REFLECT_METHOD
};

struct reflect_index;

/*
 * Indexes the FileDescriptorSet set[0..len), which must outlive the index
 * (the files' bytes are served from it).
 */
int reflect_index_load(struct reflect_index **out, const uint8_t *set,
    size_t len) VAULT_WUR;
void reflect_index_free(struct reflect_index *ix);

/* The file named name ("vault/v1/vault.proto"), or -1. */
int reflect_file_by_name(const struct reflect_index *ix, const char *name);
/* The file defining the fully qualified symbol (no leading dot), or -1. */
int reflect_file_by_symbol(const struct reflect_index *ix, const char *symbol,
    enum reflect_kind *kind);

/*
 * The file and every file it imports, directly or not, each once, the file
 * first: what a reflection client needs to build it. Writes at most max
 * file numbers into out and returns how many.
 */
size_t reflect_closure(const struct reflect_index *ix, int file, int *out,
    size_t max);
/* A file's serialized FileDescriptorProto, borrowed from the set. */
void reflect_file_bytes(const struct reflect_index *ix, int file,
    const uint8_t **data, size_t *len);
size_t reflect_n_files(const struct reflect_index *ix);

#endif
