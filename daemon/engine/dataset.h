/*
 * Datasets: what a FetchFeatures stream was for. Each dataset id gets a
 * number on first use and is bound to the purpose it was fetched for, so a
 * deletion can tell each dataset the pseudonym it saw.
 *
 * datasets: "id:" id -> number(4) | purpose
 *           "num:" number(4) -> purpose NUL id
 *           "use:" number(4) -> first ms(8) | last ms(8) | names
 *             a dataset of an ADMT purpose: its first and last FetchFeatures
 *             calls and every attribute they asked for (the names, each
 *             NUL-terminated, in name order), for ExportConsumer
 */
#ifndef VAULT_DATASET_H
#define VAULT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "conf/schema.h"
#include "engine/vault.h"

#define DATASET_ID_MAX 64
/* The keys' prefixes (above) and the offsets of their records' fields. */
#define DATASET_ID_PREFIX "id:"
#define DATASET_ID_PREFIX_LEN 3
#define DATASET_NUM_PREFIX "num:"
#define DATASET_NUM_PREFIX_LEN 4
#define DATASET_NUM_KEY_BYTES (DATASET_NUM_PREFIX_LEN + 4)
#define DATASET_NUMBER 0		/* in an "id:" record */
#define DATASET_PURPOSE 4

struct dataset_info {
	uint32_t number;
	int purpose;			/* schema index; -1 if no longer configured */
	char purpose_name[SCHEMA_NAME_MAX];
	char id[DATASET_ID_MAX + 1];
};

#define DATASET_USE_PREFIX "use:"
#define DATASET_USE_PREFIX_LEN 4
#define DATASET_USE_FIRST 0		/* offsets in a "use:" record */
#define DATASET_USE_LAST 8
#define DATASET_USE_NAMES 16
#define DATASET_USE_MAX (DATASET_USE_NAMES + SCHEMA_MAX_ATTRS * SCHEMA_NAME_MAX)

/* How an ADMT dataset was fetched (the "use:" record). */
struct dataset_use {
	uint64_t first_ms, last_ms;
	size_t n;
	char names[SCHEMA_MAX_ATTRS][SCHEMA_NAME_MAX];
};

/* NULL when id is a valid dataset id ([A-Za-z0-9._-]{1,64}); else why. */
const char *dataset_check_id(const char *id);

/*
 * The dataset's number, assigned durably on first use. VAULT_ERR_STATE when
 * the id was used before with another purpose (its name goes to *bound).
 */
int dataset_get_or_create(struct vault *v, const char *id, int purpose,
    uint32_t *number, int *bound) VAULT_WUR;

/* Within txn: the dataset with number. VAULT_ERR_NOT_FOUND if none. */
int dataset_by_number(struct vault *v, struct store_txn *txn, uint32_t number,
    struct dataset_info *out) VAULT_WUR;

/*
 * Within txn: fn for every dataset, by number; a nonzero return of fn
 * stops the walk and is returned. VAULT_ERR_STATE for a record that does
 * not read.
 */
int dataset_each(struct vault *v, struct store_txn *txn,
    int (*fn)(const struct dataset_info *ds, void *arg), void *arg) VAULT_WUR;

/* In a snapshot of its own: the dataset with id. VAULT_ERR_NOT_FOUND if none. */
int dataset_find(struct vault *v, const char *id,
    struct dataset_info *out) VAULT_WUR;
/*
 * The datasets numbers[0..n) in one snapshot: out[i], or out[i].number 0
 * when there is no such dataset or its record does not read.
 */
int dataset_find_numbers(struct vault *v, const uint32_t *numbers, size_t n,
    struct dataset_info *out) VAULT_WUR;

/*
 * Durably records a FetchFeatures call of dataset number asking for the
 * attributes attrs[0..n) (schema indexes): the time, and the names added
 * to those of the calls before. A call asking for no new name within a
 * minute of the last one recorded writes nothing.
 */
int dataset_record_use(struct vault *v, uint32_t number, const int *attrs,
    size_t n) VAULT_WUR;

/* In a snapshot of its own: dataset number's use. VAULT_ERR_NOT_FOUND if none. */
int dataset_use_find(struct vault *v, uint32_t number,
    struct dataset_use *out) VAULT_WUR;

#endif
