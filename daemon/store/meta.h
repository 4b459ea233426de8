/*
 * The meta key space (STORE_META): every key the vault keeps there, in one
 * table, with typed get/put. A key is its name's bytes (no terminator);
 * the families append a member: META_KEY_VERSION "kv/" + be32 version,
 * META_PENDING "pending/" + the version in decimal, META_JOURNAL_SEQ_OF
 * "journal_seq/" + a replica's name (the *_named calls). n selects the
 * member and is ignored for the other keys (pass 0).
 */
#ifndef VAULT_META_H
#define VAULT_META_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum meta_key {
	META_STORE_FORMAT,	/* be32 format version (written at open) */
	META_ACTIVE_VERSION,	/* be32 active master key version */
	META_KEY_VERSION,	/* kv/<be32>: key version record (keyring.c) */
	META_VAULT_KEY_INDEX,	/* vault keys sealed under the master key */
	META_VAULT_KEY_TOKEN,
	META_VAULT_KEY_RECEIPT,
	META_VAULT_KEY_AUDIT,
	META_NEXT_DATASET,	/* be32 next dataset number */
	META_ROTATION,		/* rotation state */
	META_LEDGER_NEXT,	/* u64 next ledger seq */
	META_LEDGER_EXPIRED,	/* u64 ledger expired through */
	META_PENDING,		/* pending/<version>: u64 deletions to finalize */
	META_UNKNOWN_ATTRS,	/* schema fingerprint | purge position */
	META_AUDIT_HEAD,	/* seq | hash */
	META_AUDIT_INDEXED,	/* u64 entries up to this seq are in audit_ref */
	META_AUDIT_CHECKPOINT,	/* the signed checkpoint */
	META_AUDIT_JOURNAL_SEQ,	/* u64 the last journal entry moved in */
	META_DELETION_NEXT,	/* u64 next deletion log seq (dellog.h) */
	META_DELETION_EXPIRED,	/* u64 deletion log expired through */
	META_INCARNATION,	/* 16 bytes, new at each restore (dellog.h) */
	META_KEYRING_GEN,	/* u64 bumped by every key version change */
	META_LEASE_MAINTENANCE,	/* the maintenance lease (engine/lease.h) */
	META_JOURNAL_SEQ_OF,	/* journal_seq/<replica>: u64, as above */
	META_REPLICA_OF,	/* replica/<name>: a running replica (lease.h) */
	META_CONSENT_LEDGER_NEXT,	/* u64 next consent ledger seq */
	META_CONSENT_LEDGER_EXPIRED,	/* u64 consent ledger expired through */
	META_DROP_INDEX,	/* the DROP index's build state (drop.h) */
	META_KEYS
};

/* The longest key meta_key_bytes writes. */
#define META_KEY_MAX 64
/* The longest member a named key takes (a replica's name). */
#define META_MEMBER_MAX 40

/* The key's name (a family's prefix). */
const char *meta_name(enum meta_key k);
/* Writes key k (member n) into out; returns its length. */
size_t meta_key_bytes(enum meta_key k, uint32_t n, uint8_t out[META_KEY_MAX]);

/* VAULT_ERR_NOT_FOUND when absent; val as store_get's. */
int meta_get(struct store_txn *txn, enum meta_key k, uint32_t n,
    struct store_val *val) VAULT_WUR;
int meta_put(struct store_txn *txn, enum meta_key k, uint32_t n,
    const void *data, size_t len) VAULT_WUR;
/* Deletes the key; absent is not an error. */
int meta_del(struct store_txn *txn, enum meta_key k, uint32_t n) VAULT_WUR;

/*
 * The named family (META_JOURNAL_SEQ_OF): member is 1 to META_MEMBER_MAX
 * bytes; a longer one is a programmer error (config checks the names).
 */
int meta_get_u64_named(struct store_txn *txn, enum meta_key k,
    const char *member, uint64_t *v) VAULT_WUR;
int meta_put_u64_named(struct store_txn *txn, enum meta_key k,
    const char *member, uint64_t v) VAULT_WUR;
/* Any value of a named key (META_REPLICA_OF); del: absent is no error. */
int meta_get_named(struct store_txn *txn, enum meta_key k,
    const char *member, struct store_val *val) VAULT_WUR;
int meta_put_named(struct store_txn *txn, enum meta_key k,
    const char *member, const void *data, size_t len) VAULT_WUR;
int meta_del_named(struct store_txn *txn, enum meta_key k,
    const char *member) VAULT_WUR;

/*
 * A be64 value: *v = 0 and VAULT_ERR_NOT_FOUND when absent,
 * VAULT_ERR_STATE (logged) when the value is not 8 bytes.
 */
int meta_get_u64(struct store_txn *txn, enum meta_key k, uint32_t n,
    uint64_t *v) VAULT_WUR;
int meta_put_u64(struct store_txn *txn, enum meta_key k, uint32_t n,
    uint64_t v) VAULT_WUR;
/* As meta_get_u64, but absent is 0 and no error: for counters. */
int meta_get_u64_or0(struct store_txn *txn, enum meta_key k, uint32_t n,
    uint64_t *v) VAULT_WUR;

#endif
