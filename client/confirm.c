/* Talking to the person at the terminal: a typed confirmation, a progress bar. */
#include <stdio.h>
#include <string.h>

#include "vaultctl.h"

bool
ctl_confirm(const char *prompt, const char *expect)
{
	char line[128];

	fprintf(stderr, "%s", prompt);
	fflush(stderr);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return false;
	line[strcspn(line, "\r\n")] = '\0';
	return strcmp(line, expect) == 0;
}

void
ctl_progress(const char *label, uint64_t done, uint64_t total)
{
	static const char bar[] = "########################################";
	const int width = (int)sizeof(bar) - 1;
	int fill = total > 0 ? (int)(done * (uint64_t)width / total) : width;

	fprintf(stderr, "\r%s [%-*.*s] %llu/%llu", label, width,
	    fill > width ? width : fill, bar, (unsigned long long)done,
	    (unsigned long long)total);
	fflush(stderr);
}
