/*
 * The server's credentials (see tls.c).
 */
#ifndef VAULT_RPC_TLS_H
#define VAULT_RPC_TLS_H

#include <stdbool.h>

#include <grpc/grpc_security.h>

struct server;

/*
 * Insecure credentials when cert is NULL; else TLS from the PEM files cert,
 * key and client_ca (kept in srv, read on the first handshake and again
 * after server_reload), with srv->tls set. NULL (the reason logged) when
 * one of the files cannot be read or the key's mode is too open.
 */
grpc_server_credentials *tls_credentials(struct server *srv,
    const char *cert, const char *key, const char *client_ca,
    bool require_client_cert);

#endif


