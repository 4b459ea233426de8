/*
 * Strict UTF-8, the one decoder every check of text uses (request strings,
 * schema values, audit text): shortest form only, no surrogates, nothing
 * past U+10FFFF.
 */
#ifndef VAULT_UTF8_H
#define VAULT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The length (1 to 4) of the valid character at p, which has n > 0 bytes
 * left, and its code point in *cp; 0 when no valid character starts there.
 */
size_t utf8_char(const uint8_t *p, size_t n, uint32_t *cp);

/* Whether s[0..n) is valid UTF-8 holding no NUL. */
bool utf8_valid(const uint8_t *s, size_t n);

/*
 * The longest prefix of the valid text s[0..len) that does not end inside
 * a character: where to cut text to fit a buffer.
 */
size_t utf8_prefix(const char *s, size_t len);

#endif
