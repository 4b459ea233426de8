#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/crypto.h"
#include "engine/spill.h"
#include "util/log.h"

/* About this many bytes of rows to a block: one AEAD call, one write. */
#define SPILL_BLOCK_BYTES 16384
#define AD_BYTES 16

struct block {
	uint64_t off;			/* in the file */
	uint64_t no;			/* its nonce */
	uint32_t rows;
};

struct bucket {
	uint8_t *buf;			/* the open block: held rows, plain */
	size_t held;
	struct block *blocks;		/* sealed, in the order written */
	size_t n_blocks, cap_blocks;
	size_t count;			/* rows in all */
};

/* The bytes of every spill's file, in the whole process. */
static _Atomic uint64_t spilled;

struct spill {
	int fd;
	uint64_t max_total;		/* spilled may not pass it */
	size_t row_bytes, block_rows, n_buckets;
	struct bucket *b;
	uint8_t *key;			/* locked */
	uint8_t *cipher;		/* one sealed block */
	uint8_t *plain;			/* one block opened */
	uint64_t end, next_no;
};

static void
put64(uint8_t *p, uint64_t x)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(x >> (8 * i));
}

/* What a block is bound to besides its nonce: its bucket and row count. */
static void
block_ad(uint8_t ad[AD_BYTES], size_t b, uint32_t rows)
{
	put64(ad, (uint64_t)b);
	put64(ad + 8, rows);
}

static void
block_nonce(uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES],
    uint64_t no)
{
	memset(n, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	put64(n, no);
}

static int
io_fail(int err, const char *what)
{
	log_error("a stream's temporary file: cannot %s: %s", what,
	    strerror(err));
	return err == ENOSPC || err == EDQUOT ? VAULT_ERR_NOSPACE : VAULT_ERR_IO;
}

/*
 * A file in dir with no name, readable by nobody else; O_EXCL: it can
 * never be given one (linkat). No fallback to a name removed at once: a
 * crash between the two would leave the file.
 */
static int
open_unnamed(const char *dir, int *fd)
{
	*fd = open(dir, O_TMPFILE | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (*fd >= 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
		log_error("a stream's temporary file: the filesystem of %s has "
		    "no O_TMPFILE", dir);
	return io_fail(errno, "create it");
}

int
spill_open(struct spill **out, const char *dir, size_t n_buckets,
    size_t row_bytes, uint64_t max_total)
{
	struct spill *s;
	size_t block_bytes;
	int r;

	*out = NULL;
	if (row_bytes == 0 || n_buckets == 0)
		return VAULT_ERR_INTERNAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return VAULT_ERR_NOMEM;
	s->fd = -1;
	s->max_total = max_total;
	s->row_bytes = row_bytes;
	s->block_rows = SPILL_BLOCK_BYTES / row_bytes ? SPILL_BLOCK_BYTES /
	    row_bytes : 1;
	s->n_buckets = n_buckets;
	block_bytes = s->block_rows * row_bytes;
	if ((s->b = calloc(n_buckets, sizeof(*s->b))) == NULL ||
	    (s->key = crypto_secret_alloc(
	    crypto_aead_xchacha20poly1305_ietf_KEYBYTES)) == NULL ||
	    (s->cipher = malloc(block_bytes +
	    crypto_aead_xchacha20poly1305_ietf_ABYTES)) == NULL ||
	    (s->plain = malloc(block_bytes)) == NULL) {
		spill_close(s);
		return VAULT_ERR_NOMEM;
	}
	crypto_aead_xchacha20poly1305_ietf_keygen(s->key);
	if ((r = open_unnamed(dir, &s->fd)) != 0) {
		spill_close(s);
		return r;
	}
	*out = s;
	return 0;
}

static int
write_at(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return io_fail(w < 0 ? errno : EIO, "write it");
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int
read_at(int fd, uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t got = pread(fd, p, n, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return io_fail(got < 0 ? errno : EIO, "read it");
		p += got;
		n -= (size_t)got;
		off += (uint64_t)got;
	}
	return 0;
}

/* Seals bucket bi's open block and appends it to the file. */
static int
seal(struct spill *s, size_t bi)
{
	struct bucket *b = &s->b[bi];
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	uint8_t ad[AD_BYTES];
	unsigned long long clen;
	size_t len = b->held * s->row_bytes;
	int r;

	if (b->n_blocks == b->cap_blocks) {
		size_t cap = b->cap_blocks ? 2 * b->cap_blocks : 8;
		struct block *nb = realloc(b->blocks, cap * sizeof(*nb));

		if (nb == NULL)
			return VAULT_ERR_NOMEM;
		b->blocks = nb;
		b->cap_blocks = cap;
	}
	clen = len + crypto_aead_xchacha20poly1305_ietf_ABYTES;
	if (atomic_fetch_add(&spilled, clen) + clen > s->max_total) {
		atomic_fetch_sub(&spilled, clen);
		return VAULT_ERR_LIMIT;
	}
	block_nonce(nonce, s->next_no);
	block_ad(ad, bi, (uint32_t)b->held);
	crypto_aead_xchacha20poly1305_ietf_encrypt(s->cipher, &clen, b->buf, len,
	    ad, sizeof(ad), NULL, nonce, s->key);
	if ((r = write_at(s->fd, s->cipher, (size_t)clen, s->end)) != 0) {
		atomic_fetch_sub(&spilled, clen);
		return r;
	}
	b->blocks[b->n_blocks++] = (struct block){ s->end, s->next_no,
	    (uint32_t)b->held };
	s->end += clen;
	s->next_no++;
	sodium_memzero(b->buf, len);
	b->held = 0;
	return 0;
}

int
spill_add(struct spill *s, size_t bi, const void *row)
{
	struct bucket *b = &s->b[bi];
	int r;

	if (b->buf == NULL &&
	    (b->buf = malloc(s->block_rows * s->row_bytes)) == NULL)
		return VAULT_ERR_NOMEM;
	if (b->held == s->block_rows && (r = seal(s, bi)) != 0)
		return r;
	memcpy(b->buf + b->held * s->row_bytes, row, s->row_bytes);
	b->held++;
	b->count++;
	return 0;
}

size_t
spill_count(const struct spill *s, size_t b)
{
	return s->b[b].count;
}

int
spill_read(struct spill *s, size_t bi,
    int (*fn)(void *arg, const void *rows, size_t n), void *arg)
{
	struct bucket *b = &s->b[bi];
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	uint8_t ad[AD_BYTES];
	int r = 0;

	for (size_t i = 0; i < b->n_blocks && r == 0; i++) {
		const struct block *k = &b->blocks[i];
		size_t len = (size_t)k->rows * s->row_bytes;

		if ((r = read_at(s->fd, s->cipher, len +
		    crypto_aead_xchacha20poly1305_ietf_ABYTES, k->off)) != 0)
			break;
		block_nonce(nonce, k->no);
		block_ad(ad, bi, k->rows);
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(s->plain, NULL,
		    NULL, s->cipher, len +
		    crypto_aead_xchacha20poly1305_ietf_ABYTES, ad, sizeof(ad),
		    nonce, s->key) != 0) {
			log_error("a stream's temporary file failed to "
			    "authenticate: changed on disk");
			r = VAULT_ERR_CRYPTO;
			break;
		}
		r = fn(arg, s->plain, k->rows);
		sodium_memzero(s->plain, len);
	}
	if (r == 0 && b->held > 0)
		r = fn(arg, b->buf, b->held);
	return r;
}

void
spill_close(struct spill *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; s->b != NULL && i < s->n_buckets; i++) {
		if (s->b[i].buf != NULL)
			sodium_memzero(s->b[i].buf, s->block_rows * s->row_bytes);
		free(s->b[i].buf);
		free(s->b[i].blocks);
	}
	free(s->b);
	crypto_secret_free(s->key);
	free(s->cipher);
	if (s->plain != NULL)
		sodium_memzero(s->plain, s->block_rows * s->row_bytes);
	free(s->plain);
	if (s->fd >= 0)
		close(s->fd);
	atomic_fetch_sub(&spilled, s->end);
	free(s);
}
