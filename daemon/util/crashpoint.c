#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/crashpoint.h"

#ifdef VAULT_CRASH_POINTS
static atomic_long hits;

void
crash_point(const char *name)
{
	const char *want = getenv("VAULT_CRASH_AT"), *colon;
	size_t n = strlen(name);
	long nth = 1;
	char msg[160];
	int len;

	if (want == NULL || strncmp(want, name, n) != 0 ||
	    (want[n] != '\0' && want[n] != ':'))
		return;
	if ((colon = strchr(want, ':')) != NULL)
		nth = strtol(colon + 1, NULL, 10);
	if (atomic_fetch_add(&hits, 1) + 1 < nth)
		return;
	len = snprintf(msg, sizeof(msg), "vaultd: crash point %s\n", name);
	if (len > 0)
		(void)!write(STDERR_FILENO, msg, (size_t)len);
	raise(SIGKILL);
}
#endif
