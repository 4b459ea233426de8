/*
 * "Did you mean": the closest of a list of known names to a mistyped one,
 * for error messages about settings, commands, purposes and attributes.
 */
#ifndef VAULT_SUGGEST_H
#define VAULT_SUGGEST_H

#include <stddef.h>

/*
 * The candidate closest to word by edit distance (insert, delete, replace,
 * swap of two neighbours), or NULL when none is close enough to be a
 * likely typo: at most 1 edit for words of up to 4 bytes, then one more
 * for every 4 bytes. Ties go to the first candidate.
 */
const char *suggest_closest(const char *word, const char *const *cands,
    size_t n);

/* The edit distance of a and b, stopping early once it passes limit. */
size_t suggest_distance(const char *a, const char *b, size_t limit);

#endif
