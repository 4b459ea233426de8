/*
 * The DROP index's build (drop.h): the consumers stored before a
 * drop_identifier was set, or before it changed, indexed by the janitor.
 */
#ifndef VAULT_DROPINDEX_H
#define VAULT_DROPINDEX_H

#include <stdbool.h>

#include "engine/vault.h"

/*
 * Builds the index for the consumers already stored, a batch per write
 * transaction, resuming where the last call stopped (meta "drop_index",
 * drop.h). *built: whether it is whole now.
 */
int drop_index_build(struct vault *v, bool *built) VAULT_WUR;
/* In a snapshot: whether the index is whole for the schema as it is. */
int drop_index_is_built(struct vault *v, bool *built) VAULT_WUR;

#endif
