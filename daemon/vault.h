/*
 * The engine as one object: configuration and schema, store, keyring and
 * writer. Handlers and benchmarks reach the data through it.
 */
#ifndef VAULT_VAULT_H
#define VAULT_VAULT_H

#include <stdbool.h>

#include "config.h"
#include "keyring.h"
#include "store.h"
#include "tokenize.h"
#include "vault_err.h"
#include "writer.h"

struct vault {
	const struct config *cfg;
	const struct schema *schema;
	struct store *store;
	struct keyring *kr;
	struct writer *wr;
	struct tokenizer *tok;
	/* Audit entries of calls that write nothing; the daemon opens it. */
	struct journal *jn;
	/* The audit chain failed a check: health answers NOT_SERVING. */
	volatile int audit_broken;
};

struct journal;

/*
 * Opens the store and keyring named by cfg and starts the writer. With
 * create_key, a new store without key files gets master-1.key generated.
 */
int vault_open(struct vault **out, const struct config *cfg,
    bool create_key) VAULT_WUR;
/* Closes the journal, if one was opened, then the rest. */
void vault_close(struct vault *v);

#endif
