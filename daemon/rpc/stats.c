#include <stdatomic.h>
#include <stdlib.h>

#include "rpc/stats.h"

/* 1 ms to 10 s: the range of a unary call; streams land in the last ones. */
const double rpc_latency_bounds_s[RPC_LATENCY_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
};

struct method_counters {
	atomic_uint_fast64_t calls[RPC_STATUS_CODES];
	atomic_uint_fast64_t latency[RPC_LATENCY_BUCKETS + 1];
	atomic_uint_fast64_t latency_sum_us, msgs_sent, bytes_in, bytes_out;
};

struct rpc_stats {
	struct method_counters *m;	/* n_methods + 1: the last is "unknown" */
	size_t n;
	atomic_uint_fast64_t denied[RPC_DENY_N];
};

static const char *const deny_names[RPC_DENY_N] = {
	"missing_credentials", "invalid_credentials", "unknown_identity",
	"bad_metadata", "role", "auth_rate_limit", "stream_limit",
	"pending_limit", "busy",
};

static const char *const status_names[RPC_STATUS_CODES] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
	"DATA_LOSS", "UNAUTHENTICATED",
};

int
rpc_stats_new(struct rpc_stats **out, size_t n_methods)
{
	struct rpc_stats *s;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->m = calloc(n_methods + 1, sizeof(*s->m))) == NULL) {
		free(s);
		return VAULT_ERR_NOMEM;
	}
	s->n = n_methods + 1;
	*out = s;
	return 0;
}

void
rpc_stats_free(struct rpc_stats *s)
{
	if (s == NULL)
		return;
	free(s->m);
	free(s);
}

const char *
rpc_deny_name(enum rpc_deny d)
{
	return (unsigned)d < RPC_DENY_N ? deny_names[d] : "other";
}

const char *
rpc_status_name(int code)
{
	return code >= 0 && code < RPC_STATUS_CODES ? status_names[code] :
	    "UNKNOWN";
}

static void
add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t
load(const atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static struct method_counters *
slot_of(struct rpc_stats *s, size_t slot)
{
	return &s->m[slot < s->n ? slot : s->n - 1];
}

void
rpc_stats_call(struct rpc_stats *s, size_t slot, int code, int64_t elapsed_us)
{
	struct method_counters *m;
	size_t b = 0;

	if (s == NULL)
		return;
	m = slot_of(s, slot);
	if (code < 0 || code >= RPC_STATUS_CODES)
		code = 2;	/* UNKNOWN */
	if (elapsed_us < 0)
		elapsed_us = 0;
	while (b < RPC_LATENCY_BUCKETS &&
	    (double)elapsed_us > rpc_latency_bounds_s[b] * 1e6)
		b++;
	add(&m->calls[code], 1);
	add(&m->latency[b], 1);
	add(&m->latency_sum_us, (uint64_t)elapsed_us);
}

void
rpc_stats_bytes_in(struct rpc_stats *s, size_t slot, size_t n)
{
	if (s != NULL)
		add(&slot_of(s, slot)->bytes_in, n);
}

void
rpc_stats_sent(struct rpc_stats *s, size_t slot, size_t n, int stream)
{
	struct method_counters *m;

	if (s == NULL)
		return;
	m = slot_of(s, slot);
	add(&m->bytes_out, n);
	if (stream)
		add(&m->msgs_sent, 1);
}

void
rpc_stats_denied(struct rpc_stats *s, enum rpc_deny d)
{
	if (s != NULL && (unsigned)d < RPC_DENY_N)
		add(&s->denied[d], 1);
}

void
rpc_stats_read(const struct rpc_stats *s, size_t slot,
    struct rpc_method_stats *out)
{
	const struct method_counters *m = &s->m[slot < s->n ? slot : s->n - 1];

	for (int i = 0; i < RPC_STATUS_CODES; i++)
		out->calls[i] = load(&m->calls[i]);
	for (int i = 0; i <= RPC_LATENCY_BUCKETS; i++)
		out->latency[i] = load(&m->latency[i]);
	out->latency_sum_us = load(&m->latency_sum_us);
	out->msgs_sent = load(&m->msgs_sent);
	out->bytes_in = load(&m->bytes_in);
	out->bytes_out = load(&m->bytes_out);
}

uint64_t
rpc_stats_denials(const struct rpc_stats *s, enum rpc_deny d)
{
	return (unsigned)d < RPC_DENY_N ? load(&s->denied[d]) : 0;
}
