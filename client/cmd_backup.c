/*
 * vaultctl backup --out FILE: a hot, compact copy of the store
 * (vault.v1.Admin/Backup) with its manifest, written 0600, atomically.
 * vaultctl deletions export --out FILE [--after SEQ]: the deletion log a
 * restore applies again (Admin/ExportDeletions). Both for the "backup"
 * role. File layouts: daemon/maint.h; procedure: docs/backup.md.
 *
 * Files are made as FILE.tmp-XXXXXX beside FILE (created 0600 with
 * O_EXCL), written, fsynced, renamed to FILE (never over an existing one:
 * link(2)), and the directory fsynced: FILE appears whole or not at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "vault/v1/admin.pb-c.h"
#include "vaultctl.h"

#define BACKUP_USAGE "backup --out FILE"
#define DELETIONS_USAGE "deletions export --out FILE [--after SEQ]"
#define HEADER_BYTES 4096	/* daemon/maint.h: MAINT_BACKUP_HEADER */
#define HASH_BYTES 32
#define SIG_BYTES 64	/* Ed25519 */
#define INC_BYTES 16	/* daemon/engine/dellog.h */

struct outfile {
	char tmp[4096];
	const char *path;
	int fd;
};

static int
out_open(struct outfile *o, const char *path)
{
	struct stat sb;
	mode_t old;

	o->path = path;
	o->fd = -1;
	if (lstat(path, &sb) == 0) {
		fprintf(stderr, "vaultctl: %s exists; it is never overwritten\n",
		    path);
		return -1;
	}
	if ((size_t)snprintf(o->tmp, sizeof(o->tmp), "%s.tmp-XXXXXX", path) >=
	    sizeof(o->tmp)) {
		fprintf(stderr, "vaultctl: the path is too long\n");
		return -1;
	}
	old = umask(077);
	o->fd = mkostemp(o->tmp, O_CLOEXEC);	/* 0600 from the start */
	umask(old);
	if (o->fd < 0) {
		fprintf(stderr, "vaultctl: cannot create %s: %s\n", o->tmp,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
write_all(int fd, const void *data, size_t len, off_t off)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* fsync, then the name: FILE appears whole, never over another file. */
static int
out_commit(struct outfile *o)
{
	char dir[4096];
	int dfd;

	if (fsync(o->fd) != 0 || close(o->fd) != 0) {
		o->fd = -1;
		fprintf(stderr, "vaultctl: cannot write %s: %s\n", o->tmp,
		    strerror(errno));
		return -1;
	}
	o->fd = -1;
	if (link(o->tmp, o->path) != 0) {
		fprintf(stderr, "vaultctl: cannot create %s: %s\n", o->path,
		    strerror(errno));
		return -1;
	}
	unlink(o->tmp);
	o->tmp[0] = '\0';
	snprintf(dir, sizeof(dir), "%s", o->path);
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static void
out_abort(struct outfile *o)
{
	if (o->fd >= 0)
		close(o->fd);
	if (o->tmp[0] != '\0')
		unlink(o->tmp);
}

/* ------------------------------------------------------------ backup */

struct backup_state {
	struct outfile out;
	crypto_generichash_state h;
	uint64_t bytes;
	Vault__V1__BackupManifest *manifest;	/* a copy, once received */
	bool failed;
};

static int
on_chunk(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__BackupChunk *c = (const void *)m;
	struct backup_state *b = arg;
	uint8_t buf[8192];
	size_t n;

	if (b->manifest != NULL)
		return b->failed = true, 1;	/* nothing after the manifest */
	if (c->manifest != NULL) {
		/* A copy that outlives the call: packed and unpacked again. */
		if ((n = protobuf_c_message_get_packed_size(&c->manifest->base)) >
		    sizeof(buf))
			return b->failed = true, 1;
		protobuf_c_message_pack(&c->manifest->base, buf);
		if ((b->manifest = vault__v1__backup_manifest__unpack(NULL, n,
		    buf)) == NULL)
			return b->failed = true, 1;
		return 0;
	}
	if (write_all(b->out.fd, c->data.data, c->data.len,
	    (off_t)(HEADER_BYTES + b->bytes)) != 0) {
		fprintf(stderr, "vaultctl: cannot write %s: %s\n", b->out.tmp,
		    strerror(errno));
		return b->failed = true, 1;
	}
	crypto_generichash_update(&b->h, c->data.data, c->data.len);
	b->bytes += c->data.len;
	return 0;
}

/* The manifest as daemon/maint.h reads it, NUL-padded to HEADER_BYTES. */
static int
render_manifest(const Vault__V1__BackupManifest *m, char *out)
{
	char id[2 * 64 + 1] = "", hash[2 * HASH_BYTES + 1], versions[1024] = "";
	size_t len = 0;
	int n;

	/* daemon/engine/backup.h: at most 64 versions, which always fit. */
	char sig[2 * SIG_BYTES + 1], inc[2 * INC_BYTES + 1];

	if (m->vault_id.len == 0 || m->vault_id.len > 64 ||
	    m->data_blake2b.len != HASH_BYTES || m->n_key_versions == 0 ||
	    m->n_key_versions > 64 || m->signature.len != SIG_BYTES ||
	    m->incarnation.len != INC_BYTES)
		return -1;
	sodium_bin2hex(sig, sizeof(sig), m->signature.data, SIG_BYTES);
	sodium_bin2hex(inc, sizeof(inc), m->incarnation.data, INC_BYTES);
	sodium_bin2hex(id, sizeof(id), m->vault_id.data, m->vault_id.len);
	sodium_bin2hex(hash, sizeof(hash), m->data_blake2b.data, HASH_BYTES);
	for (size_t i = 0; i < m->n_key_versions; i++)
		len += (size_t)snprintf(versions + len, sizeof(versions) - len,
		    "%s%" PRIu32, i ? "," : "", m->key_versions[i]);
	memset(out, 0, HEADER_BYTES);
	n = snprintf(out, HEADER_BYTES, "vaultd-backup 1\ncreated_ms %" PRIu64
	    "\nstore_format %" PRIu32 "\nkey_versions %s\ndeletion_seq %" PRIu64
	    "\nvault_id %s\nincarnation %s\ndata_bytes %" PRIu64
	    "\ndata_blake2b %s\nsignature %s\n", m->created_ms,
	    m->store_format, versions, m->deletion_seq, id, inc, m->data_bytes,
	    hash, sig);
	return n > 0 && n < HEADER_BYTES ? 0 : -1;
}

static int
finish_backup(struct ctl *ctl, struct backup_state *b)
{
	uint8_t hash[HASH_BYTES];
	char header[HEADER_BYTES];
	const Vault__V1__BackupManifest *m = b->manifest;

	crypto_generichash_final(&b->h, hash, sizeof(hash));
	if (m == NULL || m->data_bytes != b->bytes ||
	    m->data_blake2b.len != HASH_BYTES ||
	    sodium_memcmp(hash, m->data_blake2b.data, HASH_BYTES) != 0) {
		fprintf(stderr, "vaultctl: the backup stream is incomplete or does "
		    "not match its manifest; nothing was written\n");
		return -1;
	}
	if (render_manifest(m, header) != 0 ||
	    write_all(b->out.fd, header, HEADER_BYTES, 0) != 0) {
		fprintf(stderr, "vaultctl: cannot write the manifest\n");
		return -1;
	}
	if (out_commit(&b->out) != 0)
		return -1;
	if (ctl->json)
		printf("{\"file\":\"%s\",\"data_bytes\":%" PRIu64 ",\"deletion_seq\":%"
		    PRIu64 ",\"created_ms\":%" PRIu64 "}\n", b->out.path,
		    m->data_bytes, m->deletion_seq, m->created_ms);
	else
		printf("backup written to %s: %" PRIu64 " bytes of store, deletion "
		    "seq %" PRIu64 " (take a deletion export before restoring it)\n",
		    b->out.path, m->data_bytes, m->deletion_seq);
	return 0;
}

int
cmd_backup(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__BackupRequest req = VAULT__V1__BACKUP_REQUEST__INIT;
	struct backup_state b;
	struct vc_status st;
	const char *path = NULL;
	int ch, r = CTL_ERROR;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch != 'o')
			return ctl_usage(BACKUP_USAGE);
		path = optarg;
	}
	if (optind != argc || path == NULL)
		return ctl_usage(BACKUP_USAGE);
	memset(&b, 0, sizeof(b));
	if (out_open(&b.out, path) != 0)
		return CTL_ERROR;
	crypto_generichash_init(&b.h, NULL, 0, HASH_BYTES);
	/* No deadline: a large store takes as long as it takes. */
	if (vc_stream(ctl->vc, "/vault.v1.Admin/Backup", &req.base,
	    &vault__v1__backup_chunk__descriptor, on_chunk, &b, &st, 0) != 0) {
		if (!b.failed)
			r = ctl_fail(ctl, &st);
		goto out;
	}
	if (finish_backup(ctl, &b) == 0)
		r = CTL_OK;
out:
	out_abort(&b.out);
	if (b.manifest != NULL)
		vault__v1__backup_manifest__free_unpacked(b.manifest, NULL);
	return r;
}

/* ------------------------------------------------------------ deletions */

struct export_state {
	FILE *f;
	char id[2 * 64 + 1];
	char sig[2 * SIG_BYTES + 1];	/* from the last batch; "" until then */
	char inc[2 * INC_BYTES + 1];	/* the same in every batch */
	uint64_t count, expired;
	bool failed;
};

static int
on_batch(const ProtobufCMessage *m, void *arg)
{
	const Vault__V1__DeletionBatch *b = (const void *)m;
	struct export_state *e = arg;
	char id[2 * 64 + 1] = "", ref[2 * 32 + 1], inc[2 * INC_BYTES + 1];

	if (b->vault_id.len == 0 || b->vault_id.len > 64)
		return e->failed = true, 1;
	sodium_bin2hex(id, sizeof(id), b->vault_id.data, b->vault_id.len);
	if (e->id[0] == '\0')
		memcpy(e->id, id, sizeof(id));
	else if (strcmp(e->id, id) != 0)
		return e->failed = true, 1;
	if (b->incarnation.len != INC_BYTES)
		return e->failed = true, 1;
	sodium_bin2hex(inc, sizeof(inc), b->incarnation.data, INC_BYTES);
	if (e->inc[0] == '\0')
		memcpy(e->inc, inc, sizeof(inc));
	else if (strcmp(e->inc, inc) != 0)
		return e->failed = true, 1;
	if (b->expired_through > e->expired)
		e->expired = b->expired_through;
	/* The signature closes the stream: nothing may follow it. */
	if (e->sig[0] != '\0' || (b->signature.len != 0 &&
	    (b->signature.len != SIG_BYTES || b->n_records != 0)))
		return e->failed = true, 1;
	if (b->signature.len == SIG_BYTES)
		sodium_bin2hex(e->sig, sizeof(e->sig), b->signature.data,
		    SIG_BYTES);
	for (size_t i = 0; i < b->n_records; i++) {
		const Vault__V1__DeletionRecord *r = b->records[i];

		if (r->consumer_ref.len != 32)
			return e->failed = true, 1;
		sodium_bin2hex(ref, sizeof(ref), r->consumer_ref.data, 32);
		fprintf(e->f, "%" PRIu64 " %s %" PRIu64 "\n", r->seq, ref,
		    r->deleted_at_ms);
		e->count++;
	}
	return 0;
}

/* Header lines first: the records go to a second temporary stream. */
static int
write_export(struct outfile *o, const struct export_state *e, FILE *body,
    uint64_t after)
{
	char buf[65536];
	size_t n;
	FILE *f;
	int r = 0;

	if (e->sig[0] == '\0') {
		fprintf(stderr, "vaultctl: the daemon sent no signature of the "
		    "export; nothing was written\n");
		return -1;
	}
	if ((f = fdopen(dup(o->fd), "w")) == NULL)
		return -1;
	fprintf(f, "vaultd-deletions 1\nvault_id %s\nincarnation %s\n"
	    "after_seq %" PRIu64 "\nexpired_through %" PRIu64 "\ncount %" PRIu64
	    "\nsignature %s\n", e->id, e->inc, after, e->expired, e->count,
	    e->sig);
	rewind(body);
	while ((n = fread(buf, 1, sizeof(buf), body)) > 0)
		if (fwrite(buf, 1, n, f) != n)
			r = -1;
	if (ferror(body) || fflush(f) != 0)
		r = -1;
	fclose(f);
	return r;
}

static int
export_deletions(struct ctl *ctl, const char *path, uint64_t after)
{
	Vault__V1__ExportDeletionsRequest req =
	    VAULT__V1__EXPORT_DELETIONS_REQUEST__INIT;
	struct export_state e = { 0 };
	struct outfile o;
	struct vc_status st;
	int r = CTL_ERROR;

	req.after_seq = after;
	if (out_open(&o, path) != 0)
		return CTL_ERROR;
	if ((e.f = tmpfile()) == NULL) {
		fprintf(stderr, "vaultctl: cannot make a temporary file\n");
		goto out;
	}
	if (vc_stream(ctl->vc, "/vault.v1.Admin/ExportDeletions", &req.base,
	    &vault__v1__deletion_batch__descriptor, on_batch, &e, &st, 0) != 0) {
		if (e.failed)
			fprintf(stderr, "vaultctl: the export stream is malformed; "
			    "nothing was written\n");
		else
			r = ctl_fail(ctl, &st);
		goto out;
	}
	if (e.id[0] == '\0' || write_export(&o, &e, e.f, after) != 0 ||
	    out_commit(&o) != 0) {
		fprintf(stderr, "vaultctl: cannot write %s\n", path);
		goto out;
	}
	if (ctl->json)
		printf("{\"file\":\"%s\",\"count\":%" PRIu64 "}\n", path, e.count);
	else
		printf("%" PRIu64 " deletion(s) after seq %" PRIu64 " written to "
		    "%s\n", e.count, after, path);
	r = CTL_OK;
out:
	if (e.f != NULL)
		fclose(e.f);
	out_abort(&o);
	return r;
}

int
cmd_deletions(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "after", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	uint64_t after = 0;
	char *end;
	int ch;

	if (argc < 2 || strcmp(argv[1], "export") != 0)
		return ctl_usage(DELETIONS_USAGE);
	argc--;
	argv++;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'o': path = optarg; break;
		case 'a':
			errno = 0;
			after = strtoull(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || *optarg < '0' ||
			    *optarg > '9')
				return ctl_usage(DELETIONS_USAGE);
			break;
		default: return ctl_usage(DELETIONS_USAGE);
		}
	}
	if (optind != argc || path == NULL)
		return ctl_usage(DELETIONS_USAGE);
	return export_deletions(ctl, path, after);
}
