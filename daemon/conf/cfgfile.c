#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/cfgfile.h"
#include "util/suggest.h"
#include "util/vault_err.h"

#define fail(err, errlen, ...) \
	vault_errorf(err, errlen, VAULT_ERR_CONFIG, __VA_ARGS__)

int
cfgfile_read(config_t *lc, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	struct stat sb;
	int ok;

	if (f == NULL)
		return fail(err, errlen, "%s: cannot read the file: %s", path,
		    strerror(errno));
	if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		fclose(f);
		return fail(err, errlen, "%s: cannot read the file: not a regular "
		    "file", path);
	}
	ok = config_read(lc, f);
	fclose(f);
	if (!ok)
		return fail(err, errlen, "%s:%d: %s", path, config_error_line(lc),
		    config_error_text(lc));
	return 0;
}

static bool
is_known(const char *name, const char *const *known, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(name, known[i]) == 0)
			return true;
	return false;
}

int
cfgfile_check_names(const config_setting_t *group, const char *const *known,
    size_t n, const char *where, char *err, size_t errlen)
{
	int count = config_setting_length(group);

	for (int i = 0; i < count; i++) {
		config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s), *close;
		char names[256];

		if (name == NULL || is_known(name, known, n))
			continue;
		close = suggest_closest(name, known, n);
		if (close != NULL)
			return fail(err, errlen, "line %d: unknown setting '%s'%s%s "
			    "(did you mean '%s'?)", config_setting_source_line(s),
			    name, where[0] ? " in " : "", where, close);
		suggest_list(names, sizeof(names), known, n);
		return fail(err, errlen, "line %d: unknown setting '%s'%s%s (known: "
		    "%s)", config_setting_source_line(s), name, where[0] ? " in " :
		    "", where, names);
	}
	return 0;
}
