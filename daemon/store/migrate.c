#include "store/meta.h"
#include "store/migrate.h"
#include "store/store_lmdb.h"
#include "util/log.h"

/*
 * 1 to 2: lineage_rows is created when the store opens, and lineage kept
 * by consumer stays where it is (lineage.h reads both): nothing to write
 * but the format record, which keeps an older vaultd off the store.
 */
static int
step_1_to_2(struct store_txn *txn)
{
	(void)txn;
	return 0;
}

/*
 * 2 to 3: a consumer's values move to one values record (record.h) on the
 * consumer's next put or key rotation, and consumers of the older layouts
 * stay readable: nothing to write but the format record, which keeps an
 * older vaultd, which cannot read a consumer of format 3, off the store.
 */
static int
step_2_to_3(struct store_txn *txn)
{
	(void)txn;
	return 0;
}

/*
 * 3 to 4: a consumer record's header is bound into its wrapped DEK
 * (consumer format 4, record.h), written on the consumer's next put or
 * key rotation, or the next master key rotation: nothing to write but the
 * format record, which keeps an older vaultd, which cannot read a
 * consumer of format 4, off the store.
 */
static int
step_3_to_4(struct store_txn *txn)
{
	(void)txn;
	return 0;
}

/* The built-in steps, by from version. */
static const struct store_migration steps_table[] = {
	{ 1, "lineage in stream order (lineage_rows); lineage kept by consumer "
	    "stays readable", step_1_to_2 },
	{ 2, "one values record per consumer, written on each consumer's next "
	    "put or key rotation; older layouts stay readable", step_2_to_3 },
	{ 3, "each consumer record's header bound into its wrapped DEK, "
	    "written on the consumer's next put or key rotation or the next "
	    "master key rotation", step_3_to_4 },
};
static const size_t n_steps = sizeof(steps_table) / sizeof(steps_table[0]);

static const struct store_migration *
find_step(const struct store_migration *steps, size_t n, uint32_t from)
{
	for (size_t i = 0; i < n; i++)
		if (steps[i].from == from && steps[i].apply != NULL)
			return &steps[i];
	return NULL;
}

/* Every step from..target exists: checked before anything is written. */
static int
check_path(const struct store_migration *steps, size_t n, uint32_t from,
    uint32_t target)
{
	for (uint32_t v = from; v < target; v++)
		if (find_step(steps, n, v) == NULL) {
			log_error("store format %u; this vaultd reads %u..%u and has "
			    "no migration from format %u to %u; nothing was changed",
			    from, target, target, v, v + 1);
			return VAULT_ERR_STATE;
		}
	return 0;
}

static int
run_steps(struct store *st, const struct store_migration *steps, size_t n,
    uint32_t from, uint32_t target)
{
	struct store_txn *txn = NULL;
	uint8_t fmt[4];
	int r;

	if ((r = store_write_begin(st, &txn)) != 0)
		return r;
	for (uint32_t v = from; v < target; v++) {
		const struct store_migration *s = find_step(steps, n, v);

		log_info("store migration: format %u to %u: %s", v, v + 1,
		    s->what != NULL ? s->what : "-");
		if ((r = s->apply(txn)) != 0) {
			log_error("store migration from format %u to %u failed: %s; "
			    "nothing was changed", v, v + 1, vault_strerror(r));
			store_write_abort(txn);
			return r;
		}
	}
	store_put_u32(fmt, target);
	if ((r = meta_put(txn, META_STORE_FORMAT, 0, fmt, sizeof(fmt))) != 0) {
		store_write_abort(txn);
		return r;
	}
	return store_write_commit(txn);
}

int
store_migrate_steps(const char *dir, size_t map_size,
    const struct store_migration *steps, size_t n, uint32_t target,
    uint32_t *from, uint32_t *to)
{
	struct store *st = NULL;
	int r;

	uint32_t found;

	*from = *to = 0;
	/* Every refusal is decided before the store is opened for writing. */
	if ((r = store_probe_format(dir, &found)) != 0)
		return r;
	*from = *to = found;
	if (found > target) {
		log_error("store format %u; this vaultd reads %u..%u: the store "
		    "is newer than this vaultd; nothing was changed", found,
		    target, target);
		return VAULT_ERR_STATE;
	}
	if (found == target) {
		log_info("store format %u is current; nothing to migrate", target);
		return 0;
	}
	if ((r = check_path(steps, n, found, target)) != 0)
		return r;
	if ((r = store_open_lmdb(&st, dir, map_size, true, true)) != 0)
		return r;
	if (store_lmdb(st)->format != found) {
		log_error("the store's format changed from %u to %u while the "
		    "migration began: is another vaultd running?", found,
		    store_lmdb(st)->format);
		r = VAULT_ERR_STATE;
	} else if ((r = run_steps(st, steps, n, found, target)) == 0) {
		log_info("store migrated from format %u to %u", found, target);
		*to = target;
	}
	store_close(st);
	return r;
}

int
store_migrate(const char *dir, size_t map_size, uint32_t *from, uint32_t *to)
{
	return store_migrate_steps(dir, map_size, steps_table, n_steps,
	    STORE_FORMAT_VERSION, from, to);
}
