/*
 * The embedded default: a self-contained development vault under one
 * directory, created on first run (config with a demo marketing schema, a
 * master key, a token pepper, a policy and a bearer token holding every
 * role in DIR/dev-token). Later runs reuse what is there.
 */
#ifndef VAULT_DEVMODE_H
#define VAULT_DEVMODE_H

#include <stddef.h>

#include "util/vault_err.h"

/* Where a new development config listens. */
#define DEVMODE_LISTEN "127.0.0.1:50051"
/* Where dev mode serves metrics when its config sets no metrics_listen. */
#define DEVMODE_METRICS_LISTEN "127.0.0.1:9464"

/* Prepares dir; writes the config file's path to config_path. */
int devmode_prepare(const char *dir, char *config_path, size_t len) VAULT_WUR;

/*
 * Creates DIR/tls/ (once) with openssl: ca.pem, server.pem/.key for
 * localhost, and ROLE.pem/.key for each role (the certificate's SAN is the
 * role name, which the dev policy maps to that role). Its path goes to tls.
 */
int devmode_tls(const char *dir, char *out, size_t len) VAULT_WUR;

#endif
