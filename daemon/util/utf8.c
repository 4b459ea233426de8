#include "util/utf8.h"

size_t
utf8_char(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint32_t c = p[0];
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, c &= 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, c &= 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, c &= 0x07;
	else
		return 0;	/* a continuation byte, 0xc0/0xc1, or past 0xf4 */
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool
utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0, len;
	uint32_t cp;

	while (i < n) {
		if ((len = utf8_char(s + i, n - i, &cp)) == 0 || cp == 0)
			return false;
		i += len;
	}
	return true;
}

size_t
utf8_prefix(const char *s, size_t len)
{
	size_t i = len, need;
	uint8_t lead;

	/* Back over at most three continuation bytes to the last lead byte. */
	while (i > 0 && len - i < 3 && ((uint8_t)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return 0;
	lead = (uint8_t)s[i - 1];
	if (lead < 0x80)
		return i == len ? len : i;
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	return len - (i - 1) >= need ? len : i - 1;
}
