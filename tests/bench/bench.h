/* Helpers shared by the vaultbench commands. */
#ifndef VAULT_BENCH_H
#define VAULT_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void
bench_die(const char *what)
{
	fprintf(stderr, "vaultbench: %s\n", what);
	exit(1);
}

static inline int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int bench_clients_main(const char *cmd, int argc, char **argv);
/* vaultbench drop-list and drop-pg (bench_drop.c). */
int bench_drop_main(const char *cmd, int argc, char **argv);
/* vaultbench layout (bench_layout.c): stores in dir/per-attribute and
 * dir/one-record, which must not exist yet. */
int bench_layout_main(const char *dir, long consumers);

/* Consumer i of every workload: its id ("user-<i>@example.test") and its
 * 10 attributes, named bench_attr_names, the same for every system. */
void bench_consumer_id(long i, char *buf, size_t len);
void bench_attributes(long i, char vals[10][40]);
extern const char *const bench_attr_names[10];
/* Consumer i's ref in the fair baseline's tables (bench_clients.c). */
void bench_pg_ref(long i, unsigned char ref[32]);

#endif
