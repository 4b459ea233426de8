#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "backupfile.h"

static int
unhex(const char *hex, uint8_t *out, size_t len)
{
	size_t got;

	if (strlen(hex) != len * 2 || sodium_hex2bin(out, len, hex, len * 2,
	    NULL, &got, NULL) != 0 || got != len)
		return -1;
	return 0;
}

static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	*v = strtoull(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

static int
parse_versions(char *s, struct backupfile_manifest *m)
{
	for (char *save = NULL, *t = strtok_r(s, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (parse_u64(t, &v) != 0 || v == 0 || v > UINT32_MAX ||
		    m->n_versions == BACKUP_MAX_VERSIONS)
			return -1;
		m->versions[m->n_versions++] = (uint32_t)v;
	}
	return m->n_versions > 0 ? 0 : -1;
}

/* One "name value" line of the manifest; 0 when known and well-formed. */
static int
manifest_field(struct backupfile_manifest *m, char *line, unsigned *seen)
{
	char *val = strchr(line, ' ');
	uint64_t u;

	if (val == NULL)
		return -1;
	*val++ = '\0';
	if (strcmp(line, "vaultd-backup") == 0) {
		*seen |= 1;
		return strcmp(val, "1") == 0 ? 0 : -1;
	}
	if (strcmp(line, "key_versions") == 0)
		return *seen |= 2, parse_versions(val, m);
	if (strcmp(line, "vault_id") == 0)
		return *seen |= 4, unhex(val, m->vault_id, sizeof(m->vault_id));
	if (strcmp(line, "data_blake2b") == 0)
		return *seen |= 8, unhex(val, m->hash, sizeof(m->hash));
	if (strcmp(line, "signature") == 0)
		return *seen |= 256, unhex(val, m->sig, sizeof(m->sig));
	if (strcmp(line, "incarnation") == 0)
		return *seen |= 512, unhex(val, m->incarnation,
		    sizeof(m->incarnation));
	if (parse_u64(val, &u) != 0)
		return -1;
	if (strcmp(line, "created_ms") == 0)
		m->created_ms = u, *seen |= 16;
	else if (strcmp(line, "deletion_seq") == 0)
		m->deletion_seq = u, *seen |= 32;
	else if (strcmp(line, "data_bytes") == 0)
		m->data_bytes = u, *seen |= 64;
	else if (strcmp(line, "store_format") == 0 && u <= UINT32_MAX)
		m->store_format = (uint32_t)u, *seen |= 128;
	return 0;		/* a later field this vaultd does not know */
}

static int
export_line(struct backupfile_export *e, char *l, unsigned *seen, size_t *cap)
{
	char *f[3], *save = NULL;
	struct backupfile_deletion *d;

	if (strcmp(l, "vaultd-deletions 1") == 0)
		return *seen |= 1, 0;
	if (strncmp(l, "vault_id ", 9) == 0)
		return *seen |= 2, unhex(l + 9, e->vault_id, sizeof(e->vault_id));
	if (strncmp(l, "after_seq ", 10) == 0)
		return *seen |= 4, parse_u64(l + 10, &e->after_seq);
	if (strncmp(l, "expired_through ", 16) == 0)
		return parse_u64(l + 16, &e->expired_through);
	if (strncmp(l, "incarnation ", 12) == 0)
		return *seen |= 32, unhex(l + 12, e->incarnation,
		    sizeof(e->incarnation));
	if (strncmp(l, "signature ", 10) == 0)
		return *seen |= 16, unhex(l + 10, e->sig, sizeof(e->sig));
	if (strncmp(l, "count ", 6) == 0)
		return parse_u64(l + 6, &e->count) == 0 ? (*seen |= 8, 0) : -1;
	for (int i = 0; i < 3; i++)
		if ((f[i] = strtok_r(i == 0 ? l : NULL, " ", &save)) == NULL)
			return -1;
	if (e->n == *cap) {
		size_t c = *cap ? *cap * 2 : 256;

		if ((d = realloc(e->d, c * sizeof(*d))) == NULL)
			return -1;
		e->d = d;
		*cap = c;
	}
	d = &e->d[e->n];
	if (parse_u64(f[0], &d->seq) != 0 || unhex(f[1], d->ref,
	    sizeof(d->ref)) != 0 || parse_u64(f[2], &d->at_ms) != 0 ||
	    (e->n > 0 && d->seq <= e->d[e->n - 1].seq))
		return -1;
	e->n++;
	return 0;
}

int
backupfile_manifest_parse(char *text, size_t len, struct backupfile_manifest *m)
{
	unsigned seen = 0;
	char *end;

	memset(m, 0, sizeof(*m));
	if (len == 0)
		return -1;
	/* The text ends at its padding, or at the buffer's last byte. */
	if ((end = memchr(text, '\0', len)) == NULL)
		text[len - 1] = '\0';
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL;
	    l = strtok_r(NULL, "\n", &save))
		if (manifest_field(m, l, &seen) != 0)
			return -1;
	return seen == 1023 ? 0 : -1;
}

int
backupfile_export_parse(const char *data, size_t len,
    struct backupfile_export *e, size_t *line)
{
	char buf[256];
	unsigned seen = 0;
	size_t cap = 0, off = 0;

	memset(e, 0, sizeof(*e));
	*line = 0;
	while (off < len) {
		const char *nl = memchr(data + off, '\n', len - off);
		size_t n = (nl != NULL ? (size_t)(nl - data) : len) - off;

		++*line;
		if (n >= sizeof(buf) || memchr(data + off, '\0', n) != NULL)
			return -1;
		memcpy(buf, data + off, n);
		buf[n] = '\0';
		if (export_line(e, buf, &seen, &cap) != 0)
			return -1;
		off += n + 1;
	}
	*line = 0;
	if (seen != 63 || e->count != e->n)
		return -1;
	return 0;
}

void
backupfile_export_free(struct backupfile_export *e)
{
	free(e->d);
	e->d = NULL;
	e->n = 0;
}
