#include <string.h>

#include "conf/config.h"

static bool
replica_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/*
 * The name keys a meta record of the store (journal_seq/<name>) and the
 * maintenance lease: plain, short, and set wherever replicas share a store.
 */
int
config_check_replica(const struct config *cfg, char *err, size_t errlen)
{
	const char *name = cfg->replica_name;
	size_t n;

	if (name == NULL) {
		if (strcmp(cfg->store_backend, "postgresql") == 0)
			return vault_errorf(err, errlen, VAULT_ERR_CONFIG,
			    "store_backend = \"postgresql\" needs replica_name "
			    "(each replica of a shared store has its own)");
		return 0;
	}
	n = strlen(name);
	if (n == 0 || n > CONFIG_REPLICA_NAME_MAX)
		return vault_errorf(err, errlen, VAULT_ERR_CONFIG,
		    "replica_name must be 1 to %d characters",
		    CONFIG_REPLICA_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if (!replica_char(name[i]))
			return vault_errorf(err, errlen, VAULT_ERR_CONFIG,
			    "replica_name may hold only letters, digits, '.', '_' "
			    "and '-'");
	return 0;
}
