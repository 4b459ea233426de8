/*
 * Reading libconfig files (the config and the policy) with errors an
 * operator can act on: why a file cannot be read, and which setting is
 * unknown with the closest known one.
 */
#ifndef VAULT_CFGFILE_H
#define VAULT_CFGFILE_H

#include <stddef.h>

#include <libconfig.h>

/*
 * Reads path into lc (config_init'ed by the caller). On failure returns
 * VAULT_ERR_CONFIG with "PATH: cannot read the file: REASON" or
 * "PATH:LINE: SYNTAX ERROR" in err.
 */
int cfgfile_read(config_t *lc, const char *path, char *err, size_t errlen);

/*
 * Every member of group must be one of known (n names). The first one
 * that is not gives VAULT_ERR_CONFIG: "line N: unknown setting 'x' in
 * WHERE (did you mean 'y'?)", or with the known names listed when none is
 * close. where is "" for the top level.
 */
int cfgfile_check_names(const config_setting_t *group,
    const char *const *known, size_t n, const char *where, char *err,
    size_t errlen);

#endif
