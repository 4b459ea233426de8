#include <stdarg.h>
#include <stdio.h>

#include "util/vault_err.h"

int
vault_errorf(char *buf, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return err;
}

const char *
vault_strerror(int err)
{
	switch (err) {
	case VAULT_OK: return "success";
	case VAULT_ERR_INVALID: return "invalid argument";
	case VAULT_ERR_NOT_FOUND: return "not found";
	case VAULT_ERR_DENIED: return "permission denied";
	case VAULT_ERR_UNAUTHENTICATED: return "unauthenticated";
	case VAULT_ERR_LIMIT: return "resource limit reached";
	case VAULT_ERR_STATE: return "failed precondition";
	case VAULT_ERR_CRYPTO: return "ciphertext failed authentication";
	case VAULT_ERR_STORE: return "storage failure";
	case VAULT_ERR_NOMEM: return "out of memory";
	case VAULT_ERR_IO: return "I/O error";
	case VAULT_ERR_CONFIG: return "configuration error";
	case VAULT_ERR_KEY: return "key error";
	case VAULT_ERR_CANCELLED: return "cancelled";
	case VAULT_ERR_DEADLINE: return "deadline exceeded";
	case VAULT_ERR_UNAVAILABLE: return "unavailable";
	case VAULT_ERR_INTERNAL: return "internal error";
	case VAULT_ERR_UNIMPLEMENTED: return "not implemented";
	case VAULT_ERR_EXISTS: return "already exists";
	case VAULT_ERR_NOSPACE: return "disk full";
	case VAULT_ERR_CONSENT: return "the consumer's consent does not cover the purpose";
	}
	return "unknown error";
}
