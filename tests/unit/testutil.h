/* Helpers shared by the unit tests: temporary directories, a test config. */
#ifndef VAULT_TESTUTIL_H
#define VAULT_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "crypto/crypto.h"
#include "engine/vault.h"

/* A fresh directory under $TMPDIR (or /tmp); the caller frees the string. */
static inline char *
test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (asprintf(&p, "%s/vaulttest.XXXXXX", base ? base : "/tmp") < 0 ||
	    mkdtemp(p) == NULL)
		abort();
	return p;
}

static inline void
test_rmtree(const char *dir)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		abort();
}

static inline void
test_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

/*
 * A config under dir with a small schema: db/ and keys/ exist. extra: more
 * settings, appended ("" for none).
 */
static inline struct config *
test_config_extra(const char *dir, const char *extra)
{
	char path[4096], err[512];
	struct config *cfg = NULL;

	snprintf(path, sizeof(path), "%s/db", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/keys", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/vaultd.conf", dir);
	test_write_file(path,
	    "map_size_mb = 64;\n"
	    "schema = (\n"
	    "  { name = \"email\"; type = \"string\"; max_length = 64; },\n"
	    "  { name = \"zip\"; type = \"string\"; max_length = 10; },\n"
	    "  { name = \"age\"; type = \"int\"; min = 0L; max = 130L; }\n"
	    ");\n"
	    "purposes = ( { name = \"service\"; basis = \"opt_out\"; } );\n");
	if (*extra != '\0') {
		FILE *fp = fopen(path, "a");

		if (fp == NULL || fputs(extra, fp) < 0 || fclose(fp) != 0)
			abort();
	}
	if (config_load(&cfg, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "test config: %s\n", err);
		abort();
	}
	return cfg;
}

static inline struct config *
test_config(const char *dir)
{
	return test_config_extra(dir, "");
}

/* A vault on a fresh test directory, for the engine's tests. */
/* The ref of consumer id in v, as the API layer makes it; returns ref. */
static inline uint8_t *
test_ref(const struct vault *v, const char *id, uint8_t ref[CRYPTO_REF_BYTES])
{
	crypto_consumer_ref(keyring_index_key(v->kr), id, strlen(id), ref);
	return ref;
}
/* The same, in a buffer that lives as long as the enclosing block. */
#define TEST_REF(v, id) test_ref((v), (id), (uint8_t[CRYPTO_REF_BYTES]){ 0 })

struct test_vault {
	char *dir;
	struct config *cfg;
	struct vault *v;
};

static inline struct test_vault *
test_vault_new(void)
{
	struct test_vault *f = calloc(1, sizeof(*f));

	if (f == NULL || crypto_init() != 0)
		abort();
	f->dir = test_tmpdir();
	f->cfg = test_config(f->dir);
	if (vault_open(&f->v, f->cfg, VAULT_OPEN_CREATE) != 0)
		abort();
	return f;
}

static inline void
test_vault_free(struct test_vault *f)
{
	vault_close(f->v);
	config_free(f->cfg);
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
}

/* cmocka setup and teardown giving each test a fresh vault as its state. */
static inline int
test_vault_setup(void **state)
{
	*state = test_vault_new();
	return 0;
}

static inline int
test_vault_teardown(void **state)
{
	test_vault_free(*state);
	return 0;
}

#endif
