#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "store/meta.h"

enum member { ONE, BE32, DECIMAL, NAMED };

static const struct { const char *name; enum member member; } keys[META_KEYS] = {
	[META_STORE_FORMAT] = { "store_format", ONE },
	[META_ACTIVE_VERSION] = { "active_version", ONE },
	[META_KEY_VERSION] = { "kv/", BE32 },
	[META_VAULT_KEY_INDEX] = { "vault_key/index", ONE },
	[META_VAULT_KEY_TOKEN] = { "vault_key/token", ONE },
	[META_VAULT_KEY_RECEIPT] = { "vault_key/receipt", ONE },
	[META_VAULT_KEY_AUDIT] = { "vault_key/audit", ONE },
	[META_NEXT_DATASET] = { "next_dataset", ONE },
	[META_ROTATION] = { "rotation", ONE },
	[META_LEDGER_NEXT] = { "ledger_next", ONE },
	[META_LEDGER_EXPIRED] = { "ledger_expired", ONE },
	[META_PENDING] = { "pending/", DECIMAL },
	[META_UNKNOWN_ATTRS] = { "unknown_attrs", ONE },
	[META_AUDIT_HEAD] = { "audit_head", ONE },
	[META_AUDIT_INDEXED] = { "audit_indexed", ONE },
	[META_AUDIT_CHECKPOINT] = { "audit_checkpoint", ONE },
	[META_AUDIT_JOURNAL_SEQ] = { "audit_journal_seq", ONE },
	[META_DELETION_NEXT] = { "deletion_next", ONE },
	[META_DELETION_EXPIRED] = { "deletion_expired", ONE },
	[META_INCARNATION] = { "incarnation", ONE },
	[META_KEYRING_GEN] = { "keyring_gen", ONE },
	[META_LEASE_MAINTENANCE] = { "lease/maintenance", ONE },
	[META_JOURNAL_SEQ_OF] = { "journal_seq/", NAMED },
	[META_REPLICA_OF] = { "replica/", NAMED },
	[META_CONSENT_LEDGER_NEXT] = { "consent_ledger_next", ONE },
	[META_CONSENT_LEDGER_EXPIRED] = { "consent_ledger_expired", ONE },
	[META_DROP_INDEX] = { "drop_index", ONE },
};

const char *
meta_name(enum meta_key k)
{
	return keys[k].name;
}

size_t
meta_key_bytes(enum meta_key k, uint32_t n, uint8_t out[META_KEY_MAX])
{
	size_t len = strlen(keys[k].name);

	memcpy(out, keys[k].name, len);
	switch (keys[k].member) {
	case BE32:
		store_put_u32(out + len, n);
		return len + 4;
	case DECIMAL:
		return len + (size_t)snprintf((char *)out + len,
		    META_KEY_MAX - len, "%u", n);
	default:
		return len;
	}
}

int
meta_get(struct store_txn *txn, enum meta_key k, uint32_t n,
    struct store_val *val)
{
	uint8_t key[META_KEY_MAX];

	return store_get(txn, STORE_META, key, meta_key_bytes(k, n, key), val);
}

int
meta_put(struct store_txn *txn, enum meta_key k, uint32_t n,
    const void *data, size_t len)
{
	uint8_t key[META_KEY_MAX];

	return store_put(txn, STORE_META, key, meta_key_bytes(k, n, key), data,
	    len, 0);
}

int
meta_del(struct store_txn *txn, enum meta_key k, uint32_t n)
{
	uint8_t key[META_KEY_MAX];
	int r;

	r = store_del(txn, STORE_META, key, meta_key_bytes(k, n, key), NULL, 0);
	return r == VAULT_ERR_NOT_FOUND ? 0 : r;
}

/* A u64 record's value; a record of another length is corrupt. */
static int
decode_u64(enum meta_key k, const struct store_val *val, uint64_t *v)
{
	if (val->len != 8) {
		log_error("the store's %s record is corrupt", keys[k].name);
		return VAULT_ERR_STATE;
	}
	*v = store_get_u64(val->data);
	return 0;
}

int
meta_get_u64(struct store_txn *txn, enum meta_key k, uint32_t n, uint64_t *v)
{
	struct store_val val;
	int r;

	*v = 0;
	if ((r = meta_get(txn, k, n, &val)) != 0)
		return r;
	return decode_u64(k, &val, v);
}

int
meta_get_u64_or0(struct store_txn *txn, enum meta_key k, uint32_t n,
    uint64_t *v)
{
	int r = meta_get_u64(txn, k, n, v);

	return r == VAULT_ERR_NOT_FOUND ? 0 : r;
}

int
meta_put_u64(struct store_txn *txn, enum meta_key k, uint32_t n, uint64_t v)
{
	uint8_t buf[8];

	store_put_u64(buf, v);
	return meta_put(txn, k, n, buf, sizeof(buf));
}

/* A named key's bytes: its prefix, then member. */
static size_t
named_key_bytes(enum meta_key k, const char *member, uint8_t out[META_KEY_MAX])
{
	size_t len = strlen(keys[k].name), mlen = strlen(member);

	if (keys[k].member != NAMED || mlen == 0 || mlen > META_MEMBER_MAX)
		abort();
	memcpy(out, keys[k].name, len);
	memcpy(out + len, member, mlen);
	return len + mlen;
}

int
meta_get_u64_named(struct store_txn *txn, enum meta_key k, const char *member,
    uint64_t *v)
{
	uint8_t key[META_KEY_MAX];
	struct store_val val;
	int r;

	*v = 0;
	if ((r = store_get(txn, STORE_META, key, named_key_bytes(k, member, key),
	    &val)) != 0)
		return r;
	return decode_u64(k, &val, v);
}

int
meta_put_u64_named(struct store_txn *txn, enum meta_key k, const char *member,
    uint64_t v)
{
	uint8_t key[META_KEY_MAX], buf[8];

	store_put_u64(buf, v);
	return store_put(txn, STORE_META, key, named_key_bytes(k, member, key),
	    buf, sizeof(buf), 0);
}

int
meta_get_named(struct store_txn *txn, enum meta_key k, const char *member,
    struct store_val *val)
{
	uint8_t key[META_KEY_MAX];

	return store_get(txn, STORE_META, key, named_key_bytes(k, member, key),
	    val);
}

int
meta_put_named(struct store_txn *txn, enum meta_key k, const char *member,
    const void *data, size_t len)
{
	uint8_t key[META_KEY_MAX];

	return store_put(txn, STORE_META, key, named_key_bytes(k, member, key),
	    data, len, 0);
}

int
meta_del_named(struct store_txn *txn, enum meta_key k, const char *member)
{
	uint8_t key[META_KEY_MAX];
	int r = store_del(txn, STORE_META, key, named_key_bytes(k, member, key),
	    NULL, 0);

	return r == VAULT_ERR_NOT_FOUND ? 0 : r;
}
