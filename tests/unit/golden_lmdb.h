/*
 * test_golden.c reads records raw, through LMDB itself, below the storage
 * interface: that is what pins the bytes on disk. Its body must not change
 * (it is the proof that the format did not), so this header gives it the
 * LMDB backend's view (store_lmdb.h: struct store's databases by name) and
 * lets it pass its MDB_txn / MDB_val where the interface takes a
 * struct store_txn / struct store_val: in the LMDB backend these are the
 * same objects (store_lmdb.h), cast. For test_golden.c only.
 */
#ifndef VAULT_GOLDEN_LMDB_H
#define VAULT_GOLDEN_LMDB_H

#include <lmdb.h>

#include "store/store_lmdb.h"
#include "store/writer.h"
#include "audit/audit.h"
#include "engine/deletion.h"
#include "engine/record.h"

#define record_parse_consumer(v, rec) \
	record_parse_consumer((const struct store_val *)(v), (rec))
#define record_manifest_open(ik, ref, v, ...) \
	record_manifest_open((ik), (ref), (const struct store_val *)(v), \
	__VA_ARGS__)

#define store_read_begin(st, txn) \
	store_read_begin((st), (struct store_txn **)(void *)(txn))
#define audit_append_body_txn(al, txn, ...) \
	audit_append_body_txn((al), (struct store_txn *)(txn), __VA_ARGS__)
#define ledger_expire_txn(v, txn, ...) \
	ledger_expire_txn((v), (struct store_txn *)(txn), __VA_ARGS__)
/* Its jobs take an MDB_txn *: the same object as the writer's store_txn. */
#define writer_submit(w, fn, arg) \
	writer_submit((w), (writer_fn)(void (*)(void))(fn), (arg))

#endif
