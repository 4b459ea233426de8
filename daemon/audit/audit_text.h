/*
 * The stored form of the audit log's text fields (principal, method,
 * detail, purpose, dataset, outcome): valid UTF-8 only, so that no strict
 * client (python3-grpcio raises on invalid UTF-8 in a protobuf string)
 * ever chokes on the log, whatever a request carried.
 *
 * Text that is valid UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF) without control characters (C0, DEL, C1) is stored as it is,
 * cut to whole characters. Anything else is stored escaped: "invalid-utf8:"
 * then its printable ASCII as it is and every other byte, and the
 * backslash, as \xNN (lower-case hex), cut to whole escapes. Valid text
 * that starts with "invalid-utf8:" is escaped too, so the form always
 * tells what was sent.
 */
#ifndef VAULT_AUDIT_TEXT_H
#define VAULT_AUDIT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest stored text field, in bytes. */
#define AUDIT_TEXT_MAX 1024

/* Text s (n bytes, any bytes) in its stored form at out; returns its length. */
size_t audit_text_store(const uint8_t *s, size_t n,
    uint8_t out[AUDIT_TEXT_MAX]);

/* True when s (n bytes) is in a stored form: clean text, or escaped. */
bool audit_text_ok(const uint8_t *s, size_t n);

/*
 * A stored field for readers, into dst (cap bytes with the NUL), cut to
 * whole characters or escapes. A field in no stored form (an entry from
 * before fields were checked) is escaped first: readers get valid UTF-8.
 */
void audit_text_copy(char *dst, size_t cap, const uint8_t *src, size_t n);

#endif
