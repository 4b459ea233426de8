#include <string.h>

#include "audit/audit_text.h"
#include "util/utf8.h"

#define MARK "invalid-utf8:"
#define MARK_LEN (sizeof(MARK) - 1)

/*
 * The length of the character at p (n > 0 bytes left) when it is valid
 * UTF-8 (shortest form, no surrogate, at most U+10FFFF) and no control
 * character (C0, DEL, C1); else 0.
 */
static size_t
text_char(const uint8_t *p, size_t n)
{
	uint32_t c;
	size_t len = utf8_char(p, n, &c);

	if (len == 0 || c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f))
		return 0;
	return len;
}

/* The bytes the escaped form keeps as they are. */
static bool
plain_ascii(uint8_t c)
{
	return c >= 0x20 && c < 0x7f && c != '\\';
}

static bool
hex_digit(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool
has_mark(const uint8_t *s, size_t n)
{
	return n >= MARK_LEN && memcmp(s, MARK, MARK_LEN) == 0;
}

/* The mark, then plain ASCII and \xNN escapes only. */
static bool
escaped_form(const uint8_t *s, size_t n)
{
	if (!has_mark(s, n))
		return false;
	for (size_t i = MARK_LEN; i < n; i++) {
		if (plain_ascii(s[i]))
			continue;
		if (s[i] != '\\' || n - i < 4 || s[i + 1] != 'x' ||
		    !hex_digit(s[i + 2]) || !hex_digit(s[i + 3]))
			return false;
		i += 3;
	}
	return true;
}

/*
 * How many bytes of s are whole clean characters that fit in cap; *clean
 * is false when a character within them is not (then it stops there).
 */
static size_t
text_prefix(const uint8_t *s, size_t n, size_t cap, bool *clean)
{
	size_t off = 0, len;

	*clean = true;
	while (off < n) {
		if ((len = text_char(s + off, n - off)) == 0) {
			*clean = false;
			break;
		}
		if (off + len > cap)
			break;
		off += len;
	}
	return off;
}

bool
audit_text_ok(const uint8_t *s, size_t n)
{
	bool clean;

	if (has_mark(s, n))
		return escaped_form(s, n);
	return text_prefix(s, n, AUDIT_TEXT_MAX, &clean) == n && clean;
}

size_t
audit_text_store(const uint8_t *s, size_t n, uint8_t out[AUDIT_TEXT_MAX])
{
	static const char hex[] = "0123456789abcdef";
	bool clean;
	size_t keep = text_prefix(s, n, AUDIT_TEXT_MAX, &clean), off = MARK_LEN;

	if (clean && !has_mark(s, n)) {
		if (keep > 0)
			memcpy(out, s, keep);
		return keep;
	}
	memcpy(out, MARK, MARK_LEN);
	for (size_t i = 0; i < n; i++) {
		if (plain_ascii(s[i])) {
			if (off + 1 > AUDIT_TEXT_MAX)
				break;
			out[off++] = s[i];
			continue;
		}
		if (off + 4 > AUDIT_TEXT_MAX)
			break;
		out[off++] = '\\';
		out[off++] = 'x';
		out[off++] = (uint8_t)hex[s[i] >> 4];
		out[off++] = (uint8_t)hex[s[i] & 0xf];
	}
	return off;
}

void
audit_text_copy(char *dst, size_t cap, const uint8_t *src, size_t n)
{
	uint8_t esc[AUDIT_TEXT_MAX];

	if (!audit_text_ok(src, n)) {
		n = audit_text_store(src, n, esc);
		src = esc;
	}
	if (n >= cap) {
		n = cap - 1;
		if (has_mark(src, n)) {
			for (size_t i = n > 3 ? n - 3 : 0; i < n; i++)
				if (src[i] == '\\') {
					n = i;
					break;
				}
		} else {
			while (n > 0 && (src[n] & 0xc0) == 0x80)
				n--;
		}
	}
	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
}
