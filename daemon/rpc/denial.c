#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/denial.h"

#define MINUTE_MS 60000

struct key_count {
	struct key_count *next;
	char peer[DENIAL_PEER_MAX];
	const char *reason, *method;
	int64_t since_ms;		/* start of the summary interval */
	bool audited;			/* this interval's first was audited */
	uint64_t pending;		/* counted, not yet in an entry */
	int64_t last_ms;		/* the latest denial */
	int64_t minute_ms;		/* start of the rate window */
	uint64_t in_minute;		/* denials in it */
};

struct denials {
	pthread_mutex_t mu;
	int64_t interval_ms;
	uint64_t per_minute;
	struct key_count *keys;
	size_t n_keys;
};

int
denials_new(struct denials **out, int interval_s, int failures_per_minute)
{
	struct denials *d;

	*out = NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return VAULT_ERR_NOMEM;
	pthread_mutex_init(&d->mu, NULL);
	d->interval_ms = (int64_t)interval_s * 1000;
	d->per_minute = (uint64_t)failures_per_minute;
	*out = d;
	return 0;
}

void
denials_free(struct denials *d)
{
	struct key_count *k, *next;

	if (d == NULL)
		return;
	for (k = d->keys; k != NULL; k = next) {
		next = k->next;
		free(k);
	}
	pthread_mutex_destroy(&d->mu);
	free(d);
}

void
denials_peer_address(const char *peer, char out[DENIAL_PEER_MAX])
{
	const char *colon = peer != NULL ? strrchr(peer, ':') : NULL;
	size_t n = colon != NULL ? (size_t)(colon - peer) : (peer ? strlen(peer) : 0);
	char addr[INET6_ADDRSTRLEN + 2];
	uint8_t ip6[16];

	/* "unix:/path" has no port; "ipv4:a.b.c.d:port" and "ipv6:[..]:port" do. */
	if (peer != NULL && strncmp(peer, "unix:", 5) == 0)
		n = strlen(peer);
	if (peer != NULL && strncmp(peer, "ipv6:[", 6) == 0 && n > 7 &&
	    peer[n - 1] == ']' && n - 7 < sizeof(addr)) {
		memcpy(addr, peer + 6, n - 7);
		addr[n - 7] = '\0';
		if (inet_pton(AF_INET6, addr, ip6) == 1) {
			memset(ip6 + 8, 0, 8);
			inet_ntop(AF_INET6, ip6, addr, sizeof(addr));
			snprintf(out, DENIAL_PEER_MAX, "ipv6:[%s]/64", addr);
			return;
		}
	}
	if (n >= DENIAL_PEER_MAX)
		n = DENIAL_PEER_MAX - 1;
	memcpy(out, peer != NULL ? peer : "", n);
	out[n] = '\0';
}

/*
 * Denials of peer in the current minute, all reasons together; starts a new
 * minute for keys whose minute is over. Under d->mu.
 */
static uint64_t
peer_minute(struct denials *d, const char *peer, int64_t now_ms)
{
	uint64_t n = 0;

	for (struct key_count *k = d->keys; k != NULL; k = k->next) {
		if (strcmp(k->peer, peer) != 0)
			continue;
		if (now_ms - k->minute_ms >= MINUTE_MS) {
			k->minute_ms = now_ms;
			k->in_minute = 0;
		}
		n += k->in_minute;
	}
	return n;
}

enum denial_verdict
denials_note(struct denials *d, const char *peer_string, const char *reason,
    const char *method, int64_t now_ms)
{
	char peer[DENIAL_PEER_MAX];
	struct key_count *k;
	enum denial_verdict v;

	denials_peer_address(peer_string, peer);
	pthread_mutex_lock(&d->mu);
	for (k = d->keys; k != NULL; k = k->next)
		if (k->reason == reason && strcmp(k->peer, peer) == 0)
			break;
	if (k == NULL && d->n_keys >= DENIAL_MAX_PEERS) {
		snprintf(peer, sizeof(peer), "(other peers)");
		for (k = d->keys; k != NULL; k = k->next)
			if (k->reason == reason && strcmp(k->peer, peer) == 0)
				break;
	}
	if (k == NULL && (k = calloc(1, sizeof(*k))) != NULL) {
		memcpy(k->peer, peer, sizeof(k->peer));
		k->reason = reason;
		k->since_ms = k->minute_ms = now_ms;
		k->next = d->keys;
		d->keys = k;
		d->n_keys++;
	}
	if (k == NULL) {		/* out of memory: refuse, keep no record */
		pthread_mutex_unlock(&d->mu);
		return DENIAL_LIMITED;
	}
	if (k->method == NULL)
		k->method = method;
	else if (k->method != method && strcmp(k->method, method) != 0)
		k->method = "(various)";
	k->last_ms = now_ms;
	if (peer_minute(d, peer, now_ms) >= d->per_minute)
		v = DENIAL_LIMITED;
	else if (!k->audited)
		v = DENIAL_AUDIT;
	else
		v = DENIAL_COUNTED;
	k->in_minute++;
	if (v == DENIAL_AUDIT)
		k->audited = true;
	else
		k->pending++;
	pthread_mutex_unlock(&d->mu);
	return v;
}

void
denials_flush(struct denials *d, int64_t now_ms, bool all, denial_fn fn,
    void *arg)
{
	struct key_count **p, *k;

	for (;;) {
		struct key_count due = { 0 };
		bool found = false;

		pthread_mutex_lock(&d->mu);
		for (p = &d->keys; (k = *p) != NULL; ) {
			if (!all && now_ms - k->since_ms < d->interval_ms) {
				p = &k->next;
				continue;
			}
			if (k->pending > 0) {
				due = *k;
				due.since_ms = now_ms - k->since_ms;	/* its length */
				k->pending = 0;
				k->since_ms = now_ms;
				k->audited = false;
				k->method = NULL;
				found = true;
				break;
			}
			if (now_ms - k->last_ms >= d->interval_ms &&
			    now_ms - k->minute_ms >= MINUTE_MS) {
				*p = k->next;	/* quiet: forget it */
				free(k);
				d->n_keys--;
				continue;
			}
			k->since_ms = now_ms;	/* a new interval, audited afresh */
			k->audited = false;
			k->method = NULL;
			p = &k->next;
		}
		pthread_mutex_unlock(&d->mu);
		if (!found)
			return;
		/* A summary written, the key starts a fresh interval. */
		fn(arg, due.peer, due.reason, due.method, due.pending, due.since_ms);
	}
}
