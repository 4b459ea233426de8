/*
 * Shard calls of one FetchFeatures query that run at the same time share
 * their rare-value counts (a "meet").
 *
 * Rare values are counted over the whole stream, so that the N shards are
 * exactly the unsharded stream; alone, a shard would have to read every
 * consumer to count them. In a meet each shard call reads only its own
 * consumers, posts the category tokens of its rows counted (a part), and counts
 * over its own rows and every part posted; shards that no call took, or
 * whose call did not post in time, are read for their category tokens only
 * by whoever needs them (fetch.c). A part holds tokens, never values, and
 * lives only while some call of the meet runs; it is wiped when freed.
 *
 * The key names the query (who asked, purpose, dataset, attributes,
 * page-token place, day; fetch.c makes it) and count is the shard count:
 * calls meet only when they would count the same rows, and one
 * principal's calls never meet, wait on or time another's. Each shard index is taken once per meet; another call for
 * a taken index opens a meet of its own.
 */
#ifndef VAULT_SHARDMEET_H
#define VAULT_SHARDMEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/vault_err.h"

#define SHARDMEET_KEY_BYTES 32

struct shardmeet;

/* A category token of a shard's rows, and how many of them hold it. */
struct shardmeet_count {
	uint64_t token;
	uint32_t count;
	uint32_t attr;			/* the schema's attribute index */
};

/*
 * A shard's part: the category tokens of its rows counted, each (attribute,
 * token) once. Its size is that of the categories, not of the shard.
 */
struct shardmeet_part {
	struct shardmeet_count *counts;
	size_t n;
};

/*
 * Takes shard index (< count) in the meet of (owner, key) opened less
 * than max_age_ms ago, or in a new one. The age limit keeps a chain of
 * late calls from counting over parts taken long before their own rows.
 */
int shardmeet_join(const void *owner, const uint8_t key[SHARDMEET_KEY_BYTES],
    uint32_t count, uint32_t index, long long max_age_ms,
    struct shardmeet **out) VAULT_WUR;

/* Hands the shard's part to the meet, which frees it (and wipes it). */
void shardmeet_post(struct shardmeet *m, uint32_t index,
    struct shardmeet_part part);

/*
 * Waits until every other shard taken in the meet has posted, until the
 * monotonic clock reaches deadline_ms, or until cancelled(arg) is true
 * (VAULT_ERR_CANCELLED). 0 otherwise, with or without every part.
 */
int shardmeet_wait(struct shardmeet *m, uint32_t index, long long deadline_ms,
    bool (*cancelled)(void *), void *arg) VAULT_WUR;

/*
 * The parts posted so far: posted[j] and parts[j] for each of the count
 * shards (the caller's own included once posted). They stay valid until
 * the caller leaves.
 */
void shardmeet_parts(struct shardmeet *m, bool *posted,
    struct shardmeet_part *parts);

/* Leaves the meet; the last to leave frees it. */
void shardmeet_leave(struct shardmeet *m, uint32_t index);

#endif
