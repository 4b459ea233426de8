/*
 * Background upkeep, one pass every janitor_interval_ms: collects the
 * attribute records of deleted consumers (their DEK is already gone, so
 * they were unreadable from the moment of deletion), expires deletion
 * ledger events past their retention, and runs the hook given (shred
 * epochs, rotation resumption) in its thread.
 */
#ifndef VAULT_JANITOR_H
#define VAULT_JANITOR_H

#include "engine/vault.h"

struct janitor;

typedef void (*janitor_hook)(struct vault *v, void *arg);

int janitor_start(struct janitor **out, struct vault *v, janitor_hook hook,
    void *arg) VAULT_WUR;
/* Runs one pass now, in the caller's thread (tests, shutdown). */
int janitor_pass(struct vault *v) VAULT_WUR;
void janitor_stop(struct janitor *j);

#endif
