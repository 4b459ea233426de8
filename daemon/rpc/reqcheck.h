/*
 * The one check every request passes before any handler runs: each string
 * field of the decoded message, at any depth, is valid UTF-8, holds no NUL
 * and is within its limit. protobuf-c hands handlers NUL-terminated copies
 * of strings and forgets their wire length, so a string "a\0b" would reach
 * a handler as "a"; this check therefore walks the wire bytes, guided by the
 * message descriptor, where the true lengths still are.
 */
#ifndef VAULT_REQCHECK_H
#define VAULT_REQCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "util/vault_err.h"

/* The longest string a field may hold, by field name; 0 for the default. */
struct reqcheck_limit {
	const char *field;
	size_t max_bytes;
};

struct reqcheck_opts {
	const struct reqcheck_limit *limits;	/* ends with a NULL field */
	size_t default_max;			/* any other string field */
};

/*
 * Checks the packed message buf[0..len) of type desc. On failure returns
 * VAULT_ERR_INVALID and writes a caller-safe message naming the field (its
 * dotted path, never its content) into msg.
 */
int reqcheck_message(const ProtobufCMessageDescriptor *desc,
    const uint8_t *buf, size_t len, const struct reqcheck_opts *opts,
    char *msg, size_t msg_len) VAULT_WUR;

#endif
