/*
 * Call counters of the RPC runtime, for the metrics endpoint.
 *
 * Counted where the call is: by method (the slot of the method in the
 * dispatch table; every method not in it shares the one slot "unknown"),
 * by gRPC status code, latency (arrival to status) in fixed buckets,
 * stream messages and bytes, and denials by a fixed reason. No counter is
 * keyed by anything a caller chooses: not a consumer id, a value, a token,
 * a principal or an address. Counting is a relaxed atomic add into a
 * per-method array: no lock on the call path. Readers take each counter
 * on its own (relaxed), so a scrape may see one call's count and not yet
 * its latency: Prometheus counters need monotonicity, not a snapshot.
 */
#ifndef VAULT_RPC_STATS_H
#define VAULT_RPC_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

#define RPC_STATUS_CODES 17		/* gRPC status codes 0..16 */
#define RPC_LATENCY_BUCKETS 14		/* bounds; the last bucket is +Inf */

/* Upper bounds of the latency buckets, in seconds, ascending. */
extern const double rpc_latency_bounds_s[RPC_LATENCY_BUCKETS];

/* Why a call was refused before (or instead of) its handler. */
enum rpc_deny {
	RPC_DENY_MISSING_CREDENTIALS,	/* no certificate, no token */
	RPC_DENY_INVALID_CREDENTIALS,	/* a token the policy does not hold */
	RPC_DENY_UNKNOWN_IDENTITY,	/* a certificate the policy does not name */
	RPC_DENY_BAD_METADATA,		/* metadata not UTF-8, or too long */
	RPC_DENY_ROLE,			/* authenticated, no role for the method */
	RPC_DENY_AUTH_RATE_LIMIT,	/* too many failed authentications */
	RPC_DENY_STREAM_LIMIT,		/* max_streams and its kin */
	RPC_DENY_PENDING_LIMIT,		/* max_pending_requests and its kin */
	RPC_DENY_BUSY,			/* the work queue is full */
	RPC_DENY_N
};

/* A method's counters as one read saw them. */
struct rpc_method_stats {
	uint64_t calls[RPC_STATUS_CODES];	/* by status code */
	uint64_t latency[RPC_LATENCY_BUCKETS + 1];	/* per bucket, not cumulative */
	uint64_t latency_sum_us;
	uint64_t msgs_sent;		/* stream messages (unary replies: not) */
	uint64_t bytes_in, bytes_out;	/* request / response message bytes */
};

struct rpc_stats;

int rpc_stats_new(struct rpc_stats **out, size_t n_methods) VAULT_WUR;
void rpc_stats_free(struct rpc_stats *s);

/* "missing_credentials", ...: the metric label of d. */
const char *rpc_deny_name(enum rpc_deny d);
/* "OK", "CANCELLED", ...: the metric label of a gRPC status code. */
const char *rpc_status_name(int code);

/* Counting; slot is the method's index in the table, n_methods: unknown. */
void rpc_stats_call(struct rpc_stats *s, size_t slot, int code,
    int64_t elapsed_us);
void rpc_stats_bytes_in(struct rpc_stats *s, size_t slot, size_t n);
void rpc_stats_sent(struct rpc_stats *s, size_t slot, size_t n, int stream);
void rpc_stats_denied(struct rpc_stats *s, enum rpc_deny d);

/* Reading. */
void rpc_stats_read(const struct rpc_stats *s, size_t slot,
    struct rpc_method_stats *out);
uint64_t rpc_stats_denials(const struct rpc_stats *s, enum rpc_deny d);

#endif
