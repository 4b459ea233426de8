/*
 * The backup files vaultd --restore reads (backupfile.h): the manifest at
 * the head of a backup and the deletion export. The first byte picks the
 * decoder. A manifest that parses has its required fields in range; an
 * export that parses has count deletions in increasing seq order.
 */
#include <string.h>

#include "backupfile.h"
#include "fuzz_common.h"

#define HEADER 4096		/* maint.h: MAINT_BACKUP_HEADER */

static void
manifest(const uint8_t *data, size_t size)
{
	struct backupfile_manifest m;
	char *text;

	if (size > HEADER)
		size = HEADER;
	if ((text = malloc(size + 1)) == NULL)
		return;
	memcpy(text, data, size);
	if (size > 0 && backupfile_manifest_parse(text, size, &m) == 0) {
		FUZZ_CHECK(m.n_versions >= 1 &&
		    m.n_versions <= BACKUP_MAX_VERSIONS);
		for (size_t i = 0; i < m.n_versions; i++)
			FUZZ_CHECK(m.versions[i] != 0);
	}
	free(text);
}

static void
export(const uint8_t *data, size_t size)
{
	struct backupfile_export e;
	size_t line;

	if (backupfile_export_parse((const char *)data, size, &e, &line) == 0) {
		FUZZ_CHECK(e.count == e.n);
		for (size_t i = 1; i < e.n; i++)
			FUZZ_CHECK(e.d[i].seq > e.d[i - 1].seq);
	}
	backupfile_export_free(&e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		export(data + 1, size - 1);
	else
		manifest(data + 1, size - 1);
	return 0;
}
