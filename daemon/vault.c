#include <stdlib.h>

#include "audit.h"
#include "journal.h"
#include "log.h"
#include "vault.h"

int
vault_open(struct vault **out, const struct config *cfg, bool create_key)
{
	struct vault *v;
	int r;

	*out = NULL;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return VAULT_ERR_NOMEM;
	v->cfg = cfg;
	v->schema = &cfg->schema;
	if ((r = store_open(&v->store, cfg->store_dir,
	    (size_t)cfg->map_size_mb << 20)) != 0)
		goto fail;
	store_set_headroom(v->store, cfg->store_high_water_pct,
	    (size_t)cfg->disk_reserve_mb << 20);
	if ((r = keyring_open(&v->kr, v->store, cfg->keys_dir, create_key)) != 0)
		goto fail;
	if ((r = tokenizer_new(&v->tok, v->schema,
	    keyring_token_root(v->kr))) != 0)
		goto fail;
	if ((r = writer_start(&v->wr, v->store, (unsigned)cfg->max_group)) != 0)
		goto fail;
	if ((r = audit_index_init(v)) != 0)
		goto fail;
	*out = v;
	return 0;
fail:
	vault_close(v);
	return r;
}

void
vault_close(struct vault *v)
{
	if (v == NULL)
		return;
	journal_close(v->jn);
	writer_stop(v->wr);
	tokenizer_free(v->tok);
	keyring_free(v->kr);
	store_close(v->store);
	free(v);
}
