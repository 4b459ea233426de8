#include <stdio.h>
#include <string.h>

#include "util/suggest.h"

#define MAX_WORD 64

size_t
suggest_distance(const char *a, const char *b)
{
	size_t la = strnlen(a, MAX_WORD), lb = strnlen(b, MAX_WORD);
	/* Three rows of the optimal string alignment table. */
	size_t prev2[MAX_WORD + 1], prev[MAX_WORD + 1], cur[MAX_WORD + 1];

	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			size_t best = sub < del ? sub : del;

			best = ins < best ? ins : best;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < best)
				best = prev2[j - 2] + 1;
			cur[j] = best;
		}
		memcpy(prev2, prev, sizeof(prev));
		memcpy(prev, cur, sizeof(cur));
	}
	return prev[lb];
}

const char *
suggest_closest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1;

	for (size_t i = 0; i < n; i++) {
		size_t d = suggest_distance(word, cands[i]);
		size_t limit = strlen(cands[i]) / 3;

		if (limit == 0)
			limit = 1;
		if (d <= limit && d < best_d) {
			best = cands[i];
			best_d = d;
		}
	}
	return best;
}

char *
suggest_list(char *buf, size_t len, const char *const *cands, size_t n)
{
	static const char more[] = ", ...";
	size_t off = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t need = strlen(cands[i]) + (i ? 2 : 0);

		/* Room must stay for ", ..." unless this is the last one. */
		if (off + need + (i + 1 < n ? sizeof(more) - 1 : 0) >= len) {
			if (off + sizeof(more) - 1 < len)
				memcpy(buf + off, more + (i ? 0 : 2), sizeof(more) - (i ? 0 : 2));
			return buf;
		}
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
		    cands[i]);
	}
	return buf;
}
