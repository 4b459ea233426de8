/*
 * The daemon's one error vocabulary: 0 for success, a negative enum value for
 * failure. Handlers return these; the RPC boundary alone turns them into gRPC
 * status codes (status_from_err in rpc/call.c).
 */
#ifndef VAULT_ERR_H
#define VAULT_ERR_H

enum vault_err {
	VAULT_OK = 0,
	VAULT_ERR_INVALID = -1,		/* bad input from the caller */
	VAULT_ERR_NOT_FOUND = -2,
	VAULT_ERR_DENIED = -3,		/* authenticated, but not allowed */
	VAULT_ERR_UNAUTHENTICATED = -4,
	VAULT_ERR_LIMIT = -5,		/* a size or capacity limit */
	VAULT_ERR_STATE = -6,		/* failed precondition */
	VAULT_ERR_CRYPTO = -7,		/* a ciphertext failed to authenticate */
	VAULT_ERR_STORE = -8,		/* the storage engine failed */
	VAULT_ERR_NOMEM = -9,
	VAULT_ERR_IO = -10,
	VAULT_ERR_CONFIG = -11,
	VAULT_ERR_KEY = -12,		/* missing, malformed or wrong key */
	VAULT_ERR_CANCELLED = -13,
	VAULT_ERR_DEADLINE = -14,
	VAULT_ERR_UNAVAILABLE = -15,	/* shutting down, or the store failed */
	VAULT_ERR_INTERNAL = -16,
	VAULT_ERR_UNIMPLEMENTED = -17,
	VAULT_ERR_CONSENT = -18,	/* the consumer's consent excludes the purpose */
	VAULT_ERR_EXISTS = -19,		/* an id already names something else */
	VAULT_ERR_NOSPACE = -20,	/* the filesystem is full (ENOSPC) */
};

/* A static, secret-free description of err; never NULL. */
const char *vault_strerror(int err);

#include <stddef.h>

/* Formats a message into buf (len bytes) and returns err: for parsers. */
int vault_errorf(char *buf, size_t len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#if defined(__GNUC__)
#define VAULT_WUR __attribute__((warn_unused_result))
#else
#define VAULT_WUR
#endif

#endif
