#include <stdlib.h>
#include <string.h>

#include "util/suggest.h"

/* Longer names are compared only up to this; config names are short. */
#define SUGGEST_MAX 128

static size_t
min3(size_t a, size_t b, size_t c)
{
	size_t m = a < b ? a : b;

	return m < c ? m : c;
}

/*
 * Optimal string alignment distance over three rows of the table; the
 * transposition of two neighbours ("log_levle") counts as one edit.
 */
size_t
suggest_distance(const char *a, const char *b, size_t limit)
{
	size_t la = strnlen(a, SUGGEST_MAX), lb = strnlen(b, SUGGEST_MAX);
	size_t rows[3][SUGGEST_MAX + 1], *pp = rows[0], *p = rows[1],
	    *c = rows[2], *t;

	if ((la > lb ? la - lb : lb - la) > limit)
		return limit + 1;
	for (size_t j = 0; j <= lb; j++)
		p[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t best;

		c[0] = best = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];

			c[j] = min3(p[j] + 1, c[j - 1] + 1, p[j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && pp[j - 2] + 1 < c[j])
				c[j] = pp[j - 2] + 1;
			if (c[j] < best)
				best = c[j];
		}
		if (best > limit)
			return limit + 1;
		t = pp, pp = p, p = c, c = t;
	}
	return p[lb];
}

const char *
suggest_closest(const char *word, const char *const *cands, size_t n)
{
	size_t limit = 1 + strnlen(word, SUGGEST_MAX) / 4, best = limit + 1;
	const char *out = NULL;

	if (word[0] == '\0')
		return NULL;
	if (strnlen(word, SUGGEST_MAX) <= 4)
		limit = 1;
	for (size_t i = 0; i < n; i++) {
		size_t d = suggest_distance(word, cands[i], limit);

		if (d <= limit && d < best) {
			best = d;
			out = cands[i];
		}
	}
	return out;
}
