/*
 * Helpers shared by the fuzz targets (one per decoder; see README.md).
 * Each target is a libFuzzer LLVMFuzzerTestOneInput over one decoder of
 * outside or on-disk input, with the checks that decoder promises as
 * assertions (FUZZ_CHECK aborts, so libFuzzer reports and saves the input).
 */
#ifndef VAULT_FUZZ_COMMON_H
#define VAULT_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "util/log.h"

/* A broken promise of the decoder: a finding, not a harness error. */
#define FUZZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #cond);					\
		abort();						\
	}								\
} while (0)

/*
 * Once per process: libsodium, and the daemon's log quiet (below every
 * level; the decoders log each refusal, which would drown the fuzzer's
 * output and slow it). VAULT_FUZZ_LOG=1 keeps the log.
 */
static inline void
fuzz_init(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	if (sodium_init() < 0)
		abort();
	if (getenv("VAULT_FUZZ_LOG") == NULL)
		log_set_level((enum log_level)-1);
}

/* A fixed key: the same every run, so that a saved input replays. */
static inline void
fuzz_key(uint8_t *key, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		key[i] = (uint8_t)(seed + 31 * i);
}

/* This process's scratch directory (under TMPDIR), made once. */
static inline const char *
fuzz_dir(void)
{
	static char dir[4096];

	if (dir[0] == '\0') {
		const char *t = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/vault-fuzz-XXXXXX",
		    t != NULL && t[0] != '\0' ? t : "/tmp");
		if (mkdtemp(dir) == NULL) {
			perror("mkdtemp");
			abort();
		}
	}
	return dir;
}

/* Writes data to name in the scratch directory (mode 0600); its path. */
static inline const char *
fuzz_file(const char *name, const uint8_t *data, size_t size)
{
	static char path[4200];
	char tmp[4210];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", fuzz_dir(), name);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    (size > 0 && write(fd, data, size) != (ssize_t)size) || close(fd) != 0 ||
	    rename(tmp, path) != 0) {
		perror(tmp);
		abort();
	}
	return path;
}

/* A NUL-terminated copy of data (the decoders under test take C strings). */
static inline char *
fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
