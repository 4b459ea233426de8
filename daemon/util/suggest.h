/*
 * "Did you mean": the known name closest to a mistyped one, by edit
 * distance. Used for names that are configuration, never secrets (commands,
 * purposes, schema attributes, settings): the mistyped word itself is not
 * echoed by the callers, only the known name it is close to.
 */
#ifndef VAULT_SUGGEST_H
#define VAULT_SUGGEST_H

#include <stddef.h>

/*
 * The Levenshtein distance between a and b (insert, delete, substitute,
 * each 1; an adjacent swap counts 1 too), capped at 64 for long inputs.
 */
size_t suggest_distance(const char *a, const char *b);

/*
 * The candidate closest to word when it is close enough to be a typo (at
 * most a third of the candidate's length, and at least 1, changes away),
 * else NULL. The first of equally close candidates wins.
 */
const char *suggest_closest(const char *word, const char *const *cands,
    size_t n);

/*
 * Writes "a, b, c" (the candidates in order) into buf of size len; when they
 * do not fit, as many as fit followed by ", ...". Returns buf.
 */
char *suggest_list(char *buf, size_t len, const char *const *cands, size_t n);

#endif
