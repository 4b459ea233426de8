/* Deadlines for pthread_cond_timedwait (CLOCK_REALTIME), and intervals. */
#ifndef VAULT_TIMEUTIL_H
#define VAULT_TIMEUTIL_H

#include <time.h>

/* The CLOCK_REALTIME instant ms milliseconds from now. */
static inline struct timespec
time_after_ms(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Milliseconds on the monotonic clock: for intervals, never for dates. */
static inline long long
time_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
