#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "engine/backup.h"
#include "engine/dellog.h"
#include "store/copy.h"
#include "util/log.h"

/* Adds the versions not destroyed to m (once each). */
static int
add_live_versions(struct vault *v, struct store_txn *txn,
    struct backup_manifest *m)
{
	struct key_version *vs = NULL;
	size_t n;
	int r;

	if ((r = keyring_versions(v->kr, txn, &vs, &n)) != 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		bool have = false;

		if (vs[i].destroyed)
			continue;
		for (size_t j = 0; j < m->n_versions; j++)
			have |= m->versions[j] == vs[i].version;
		if (have)
			continue;
		if (m->n_versions == BACKUP_MAX_VERSIONS) {
			log_error("backup: more than %d live master key versions",
			    BACKUP_MAX_VERSIONS);
			r = VAULT_ERR_LIMIT;
			break;
		}
		m->versions[m->n_versions++] = vs[i].version;
	}
	free(vs);
	return r;
}

static int
read_manifest(struct vault *v, struct backup_manifest *m, bool first)
{
	struct store_txn *txn = NULL;
	int r;

	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if (first) {
		m->created_ms = store_now_ms();
		m->store_format = STORE_FORMAT_VERSION;
		memcpy(m->vault_id, keyring_receipt_public_key(v->kr),
		    KEYRING_PK_BYTES);
		r = dellog_next(txn, &m->deletion_seq);
		if (r == 0)
			r = dellog_incarnation_txn(txn, m->incarnation);
	}
	if (r == 0)
		r = add_live_versions(v, txn, m);
	store_read_end(txn);
	return r;
}

struct copier {
	struct vault *v;
	int fd;			/* the pipe's write end, closed by the thread */
	int r;
};

static void *
copy_thread(void *arg)
{
	struct copier *c = arg;

	c->r = store_copy_fd(c->v->store, c->fd);
	close(c->fd);
	return NULL;
}

/* Reads the pipe to its end, hashing and handing each chunk to the sink. */
static int
pump(int fd, const struct backup_sink *sink, uint64_t *bytes,
    crypto_generichash_state *h)
{
	uint8_t *buf = malloc(BACKUP_CHUNK_BYTES);
	size_t have = 0;
	ssize_t n;
	int r = 0;

	if (buf == NULL)
		return VAULT_ERR_NOMEM;
	for (;;) {
		n = read(fd, buf + have, BACKUP_CHUNK_BYTES - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("backup: reading the copy: %s", strerror(errno));
			r = VAULT_ERR_IO;
			break;
		}
		have += (size_t)n;
		if (have < BACKUP_CHUNK_BYTES && n > 0)
			continue;
		if (have > 0) {
			crypto_generichash_update(h, buf, have);
			*bytes += have;
			if ((r = sink->data(sink->arg, buf, have)) != 0)
				break;
			have = 0;
		}
		if (n == 0)
			break;
	}
	free(buf);
	return r;
}

/* The vault vouches for the manifest: a restore trusts no edited field. */
static void
sign_manifest(struct vault *v, struct backup_manifest *m)
{
	uint8_t msg[BACKUP_SIG_MSG_BYTES];

	backup_manifest_message(m, msg);
	keyring_sign(v->kr, msg, sizeof(msg), m->sig);
}

int
backup_run(struct vault *v, const struct backup_sink *sink)
{
	struct backup_manifest m;
	struct copier c = { .v = v, .fd = -1, .r = 0 };
	crypto_generichash_state h;
	pthread_t tid;
	int fds[2] = { -1, -1 }, r;

	memset(&m, 0, sizeof(m));
	if ((r = read_manifest(v, &m, true)) != 0)
		return r;
	if (pipe2(fds, O_CLOEXEC) != 0) {
		log_error("backup: cannot make a pipe: %s", strerror(errno));
		return VAULT_ERR_IO;
	}
	c.fd = fds[1];
	if (pthread_create(&tid, NULL, copy_thread, &c) != 0) {
		close(fds[0]);
		close(fds[1]);
		return VAULT_ERR_NOMEM;
	}
	crypto_generichash_init(&h, NULL, 0, BACKUP_HASH_BYTES);
	r = pump(fds[0], sink, &m.bytes, &h);
	/* An early stop closes the pipe: the copy fails with EPIPE and ends. */
	close(fds[0]);
	pthread_join(tid, NULL);
	if (r == 0)
		r = c.r;
	if (r != 0)
		return r;
	crypto_generichash_final(&h, m.hash, BACKUP_HASH_BYTES);
	/* Versions a rotation added during the copy: the copy may use them. */
	if ((r = read_manifest(v, &m, false)) != 0)
		return r;
	sign_manifest(v, &m);
	return sink->manifest(sink->arg, &m);
}
