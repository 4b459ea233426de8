/*
 * Accounting of anonymous denials (calls refused as UNAUTHENTICATED).
 *
 * Anyone who can reach the port can make such calls, so each one cannot
 * cost an audit entry: a flood would fill the disk. Denials are counted per
 * peer address (without the port, so reconnecting changes nothing) and
 * reason. The first denial of a peer and reason in an interval is audited
 * at once; the rest are counted, and one summary entry carrying the count
 * is written when the interval ends. So the audit log grows by at most two
 * entries per peer, reason and interval, however fast the calls come.
 *
 * Past auth_failures_per_peer denials in a minute (all reasons together), a
 * peer's further failed authentications are answered RESOURCE_EXHAUSTED
 * (still counted). An IPv6 peer is its /64: one host usually holds a whole
 * /64, and would otherwise be a new peer at each address. Valid
 * credentials from the same address are never refused: an attacker behind
 * a shared address cannot lock out the legitimate clients there.
 *
 * Memory is bounded: past DENIAL_MAX_PEERS tracked keys, the rest count
 * under one "other peers" key.
 */
#ifndef VAULT_DENIAL_H
#define VAULT_DENIAL_H

#include <stdbool.h>
#include <stdint.h>

#include "util/vault_err.h"

#define DENIAL_MAX_PEERS 4096
#define DENIAL_PEER_MAX 64

enum denial_verdict {
	DENIAL_AUDIT,		/* write an entry for this call now */
	DENIAL_COUNTED,		/* counted into the next summary */
	DENIAL_LIMITED,		/* counted; answer RESOURCE_EXHAUSTED */
};

struct denials;

int denials_new(struct denials **out, int interval_s,
    int failures_per_minute) VAULT_WUR;
void denials_free(struct denials *d);

/*
 * Notes one denial from peer (a gRPC peer string such as
 * "ipv4:10.0.0.1:5431"; the port is dropped) for reason (a static string)
 * of a call to method (a static string). now_ms is monotonic. Thread-safe.
 */
enum denial_verdict denials_note(struct denials *d, const char *peer,
    const char *reason, const char *method, int64_t now_ms);

/*
 * One summary: count denials of peer for reason over the last interval_ms;
 * method is "(various)" when they were calls to several methods.
 */
typedef void (*denial_fn)(void *arg, const char *peer, const char *reason,
    const char *method, uint64_t count, int64_t interval_ms);

/*
 * Calls fn for every key whose interval has ended (every key with a count
 * when all is true) and starts a new interval for it; keys quiet for a
 * whole interval are forgotten. fn runs without the lock held.
 */
void denials_flush(struct denials *d, int64_t now_ms, bool all, denial_fn fn,
    void *arg);

/*
 * The address part of a gRPC peer string, into out (DENIAL_PEER_MAX): the
 * port dropped, an IPv6 address cut to its /64 ("ipv6:[2001:db8:1:2::]/64").
 */
void denials_peer_address(const char *peer, char out[DENIAL_PEER_MAX]);

#endif
