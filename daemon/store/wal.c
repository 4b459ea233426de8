/*
 * The LMDB backend's write-ahead journal (wal.h): records, checkpoints,
 * recovery.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "store/backend.h"
#include "store/wal.h"
#include "util/crashpoint.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/timeutil.h"

#define WAL_MAGIC 0x5657414cu		/* "VWAL" */
/* In the length field: the record was synced before it was acknowledged. */
#define LEN_DURABLE 0x80000000u
#define LEN_MASK 0x7fffffffu
/* A transaction's record is refused past this (VAULT_ERR_LIMIT). */
#define REC_MAX ((size_t)256 << 20)
#define HDR 16				/* magic | body length | seq */
#define MAC_BYTES 32
#define OP_HDR 8			/* op | space | klen | vlen */
#define DOMAIN "vaultd store journal v1"
/* Each segment is kept zeroed this far ahead, so appends allocate nothing. */
#define SEG_PREALLOC ((off_t)4 << 20)
#define SEG_READ_MAX ((off_t)1 << 30)
/* Past grow_mark by this many grow_pages, a write waits for a checkpoint. */
#define GROW_HARD 3
/*
 * The largest step (grow_pages) in bytes. What a pinned snapshot keeps from
 * reuse becomes file growth: at 16 MiB a 21k-consumer load left a 172 MB
 * file, at 4 MiB 131-139 MB, at no pin 62 MB, at the same put rates
 * (docs/performance.md, "Durable puts").
 */
#define GROW_MAX_BYTES ((size_t)4 << 20)
/* Near the map's end, a checkpoint before a write at least this often. */
#define NEAR_END_MS 20

#define CKPT_MAGIC "vaultd wal ckpt1"	/* 16 bytes */
#define CKPT_FIXED 96			/* magic .. root hash, then the pages */
#define KCV_BYTES 16
#define META_MAIN_ROOT_OFF 128		/* of mm_dbs[MAIN_DBI].md_root (LE) */
#define META_TXNID_OFF 144		/* of mm_txnid in a meta page (LE) */
#define META_MAGIC_OFF 16
#define LMDB_MAGIC 0xBEEFC0DEu

static const char *const seg_name[2] = { "wal.0", "wal.1" };
static const char ckpt_name[] = "wal.ckpt";
static const char data_name[] = "data.mdb";

struct wal {
	struct wal_store s;
	char *dir;
	uint8_t key[WAL_KEY_BYTES];
	int seg_fd[2];
	off_t end[2];			/* bytes of records in each segment */
	off_t size[2];			/* each file's size: zeros past end */
	int cur;			/* the segment taking appends */
	int data_fd;			/* data.mdb, for the meta pages */
	unsigned psize;
	uint64_t next_seq;		/* the next record's */
	uint64_t ckpt_seq;		/* the last checkpoint's S */
	/*
	 * The pinned snapshot keeps LMDB from reusing the pages freed since
	 * it: the file grows instead. Past grow_mark (the last page at the
	 * checkpoint plus grow_pages) a commit asks for the next checkpoint.
	 */
	size_t grow_mark, grow_pages;
	size_t ckpt_pgno;		/* the last page at the last checkpoint */
	uint64_t ckpt_ms;		/* when it pinned (monotonic) */
	bool pressure;			/* the map was full since it */
	MDB_txn *pin;			/* the checkpoint's snapshot, held */
	pthread_mutex_t mu;		/* the commit lock; cv's */
	pthread_mutex_t ck_mu;		/* one checkpoint at a time */
	pthread_cond_t cv;		/* a segment is full, or stop */
	bool want, stopping, broken;
	bool started;
	pthread_t thread;
};

/* ------------------------------------------------------------ buffers */

static int
buf_grow(struct wal_buf *b, size_t more)
{
	size_t cap = b->cap != 0 ? b->cap : 4096;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return VAULT_ERR_NOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int
wal_buf_op(struct wal_buf *b, enum wal_op op, enum store_space sp,
    const void *key, size_t klen, const void *val, size_t vlen)
{
	uint8_t *p;

	if (klen > UINT16_MAX || vlen > UINT32_MAX ||
	    buf_grow(b, OP_HDR + klen + vlen) != 0)
		return VAULT_ERR_NOMEM;
	p = b->p + b->len;
	p[0] = (uint8_t)op;
	p[1] = (uint8_t)sp;
	p[2] = (uint8_t)(klen >> 8);
	p[3] = (uint8_t)klen;
	store_put_u32(p + 4, (uint32_t)vlen);
	memcpy(p + OP_HDR, key, klen);
	if (vlen > 0)
		memcpy(p + OP_HDR + klen, val, vlen);
	b->len += OP_HDR + klen + vlen;
	return 0;
}

int
wal_buf_join(struct wal_buf *dst, const struct wal_buf *src)
{
	if (src->len == 0)
		return 0;
	if (buf_grow(dst, src->len) != 0)
		return VAULT_ERR_NOMEM;
	memcpy(dst->p + dst->len, src->p, src->len);
	dst->len += src->len;
	return 0;
}

int
wal_body_ops(const uint8_t *body, size_t len,
    int (*fn)(enum wal_op op, enum store_space sp, const uint8_t *key,
    size_t klen, const uint8_t *val, size_t vlen, void *arg), void *arg)
{
	size_t off = 0;
	int r;

	while (off < len) {
		const uint8_t *p = body + off;
		size_t klen, vlen, rest;

		if (len - off < OP_HDR)
			return VAULT_ERR_STATE;
		klen = (size_t)p[2] << 8 | p[3];
		vlen = store_get_u32(p + 4);
		rest = len - off - OP_HDR;
		if (p[0] < WAL_PUT || p[0] > WAL_DELPFX || p[1] >= STORE_SPACES ||
		    klen == 0 || klen > STORE_KEY_MAX || klen > rest ||
		    vlen > rest - klen)
			return VAULT_ERR_STATE;
		if ((r = fn((enum wal_op)p[0], (enum store_space)p[1], p + OP_HDR,
		    klen, p + OP_HDR + klen, vlen, arg)) != 0)
			return r;
		off += OP_HDR + klen + vlen;
	}
	return 0;
}

/* ------------------------------------------------------------ records */

static void
mac_of(const uint8_t *key, const uint8_t *hdr, const uint8_t *body,
    size_t len, uint8_t out[MAC_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, WAL_KEY_BYTES, MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)DOMAIN,
	    sizeof(DOMAIN) - 1);
	crypto_generichash_update(&st, hdr, HDR);
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, out, MAC_BYTES);
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Whether a whole record, synced when written, starts at or after from. */
static bool
durable_after(const uint8_t *buf, size_t len, size_t from,
    const uint8_t *key)
{
	uint8_t mac[MAC_BYTES];

	for (size_t p = from; p + HDR <= len; p++) {
		uint32_t l;
		size_t blen;

		if (buf[p] != 0x56 || store_get_u32(buf + p) != WAL_MAGIC)
			continue;
		l = store_get_u32(buf + p + 4);
		blen = l & LEN_MASK;
		if (!(l & LEN_DURABLE) || blen > len - p - HDR ||
		    len - p - HDR - blen < MAC_BYTES)
			continue;
		mac_of(key, buf + p, buf + p + HDR, blen, mac);
		if (sodium_memcmp(mac, buf + p + HDR + blen, MAC_BYTES) == 0)
			return true;
	}
	return false;
}

int
wal_parse(const uint8_t *buf, size_t len, const uint8_t key[WAL_KEY_BYTES],
    int (*fn)(const struct wal_rec *rec, void *arg), void *arg, size_t *end,
    bool *torn, const char **why)
{
	size_t off = 0;
	int r;

	*torn = false;
	*why = NULL;
	for (;;) {
		uint8_t mac[MAC_BYTES];
		struct wal_rec rec;
		size_t blen, extent;

		*end = off;
		if (off == len || all_zero(buf + off, len - off))
			return 0;
		if (len - off < HDR)
			goto torn;
		blen = store_get_u32(buf + off + 4) & LEN_MASK;
		if (store_get_u32(buf + off) != WAL_MAGIC ||
		    blen > len - off - HDR || MAC_BYTES > len - off - HDR - blen) {
			extent = HDR;
			goto bad;
		}
		extent = HDR + blen + MAC_BYTES;
		mac_of(key, buf + off, buf + off + HDR, blen, mac);
		if (sodium_memcmp(mac, buf + off + HDR + blen, MAC_BYTES) != 0)
			goto bad;
		rec.seq = store_get_u64(buf + off + 8);
		rec.body = buf + off + HDR;
		rec.len = blen;
		if ((r = fn(&rec, arg)) != 0)
			return r;
		off += extent;
		continue;
bad:
		/*
		 * Cut short by a crash mid-append, or left out of order by the
		 * writeback of records never synced: unless a record synced
		 * before its acknowledgement follows (its fdatasync covered
		 * this one), which only damage explains.
		 */
		(void)extent;
		if (!durable_after(buf, len, off + 1, key))
			goto torn;
		*why = "a record fails its check and a synced one follows it";
		return VAULT_ERR_STATE;
torn:
		*torn = true;
		return 0;
	}
}

/* ------------------------------------------------------------ files */

static int
path_of(char *buf, size_t len, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len) {
		log_error("the store directory's path is too long");
		return VAULT_ERR_INVALID;
	}
	return 0;
}

static int
write_all(int fd, const void *p, size_t n, off_t off)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = pwrite(fd, b, n, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		b += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

static int
io_err(int err, const char *what, const char *name)
{
	log_error("store journal: cannot %s %s: %s", what, name, strerror(err));
	return err == ENOSPC || err == EDQUOT ? VAULT_ERR_NOSPACE :
	    VAULT_ERR_IO;
}

/*
 * Overwrites the non-zero bytes of fd's first n bytes (all of it when n is
 * -1) with zeros, then extends the file with zeros to at least min bytes,
 * and syncs. *size: the file's size after.
 */
static int
zero_segment(int fd, off_t n, off_t min, off_t *size, const char *name)
{
	static const uint8_t zeros[65536];
	uint8_t chunk[65536];
	struct stat sb;
	off_t off, end;
	int err;

	if (fstat(fd, &sb) != 0)
		return io_err(errno, "examine", name);
	if (n < 0 || n > sb.st_size)
		n = sb.st_size;
	for (off = 0; off < n; ) {
		size_t want = (size_t)(n - off < (off_t)sizeof(chunk) ? n - off :
		    (off_t)sizeof(chunk));
		ssize_t got = pread(fd, chunk, want, off);

		if (got <= 0)
			return io_err(got < 0 ? errno : EIO, "read", name);
		if (!all_zero(chunk, (size_t)got)) {
			if ((err = write_all(fd, zeros, (size_t)got, off)) != 0)
				return io_err(err, "erase", name);
			VAULT_CRASH_POINT("wal.zeroing");
		}
		off += got;
	}
	for (end = sb.st_size; end < min; end += (off_t)sizeof(zeros))
		if ((err = write_all(fd, zeros, sizeof(zeros), end)) != 0)
			return io_err(err, "extend", name);
	/* Grown by a burst far past its usual size: back to it, zeroed. */
	if (min > 0 && end > 4 * min) {
		if (ftruncate(fd, min) != 0)
			return io_err(errno, "shrink", name);
		end = min;
	}
	if (fdatasync(fd) != 0)
		return io_err(errno, "sync", name);
	*size = end;
	return 0;
}

/* Reads a whole segment (NULL, 0 when missing). */
static int
read_segment(const char *dir, int i, uint8_t **out, size_t *len)
{
	char path[4096];
	struct stat sb;
	ssize_t got;
	int fd, r;

	*out = NULL;
	*len = 0;
	if ((r = path_of(path, sizeof(path), dir, seg_name[i])) != 0)
		return r;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == ENOENT ? 0 : io_err(errno, "open", seg_name[i]);
	if (fstat(fd, &sb) != 0 || sb.st_size > SEG_READ_MAX) {
		close(fd);
		log_error("store journal: %s is too large to be a journal "
		    "segment", seg_name[i]);
		return VAULT_ERR_STATE;
	}
	if (sb.st_size > 0 && (*out = malloc((size_t)sb.st_size)) == NULL) {
		close(fd);
		return VAULT_ERR_NOMEM;
	}
	for (*len = 0; *len < (size_t)sb.st_size; *len += (size_t)got)
		if ((got = pread(fd, *out + *len, (size_t)sb.st_size - *len,
		    (off_t)*len)) <= 0)
			break;
	close(fd);
	return 0;
}

/* ------------------------------------------------------------ checkpoints */

/*
 * wal.ckpt: magic(16) | seq(8) | txnid(8) | psize(4) | cur(4) | kcv(16) |
 * root hash(32) | pad(8) | meta pages 0 and 1 | BLAKE2b-256 of the rest.
 * kcv: the journal key's check value (a recovery under another key is
 * refused, not taken for a torn journal). root hash: of the page holding
 * the root of S's main database, which the pinned snapshot keeps intact in
 * the data file: a data.mdb that is not the one the checkpoint was taken
 * of (a backup copied over it) is refused before anything is written.
 */
struct ckpt {
	uint64_t seq, txnid;
	uint32_t psize, cur;
	uint8_t kcv[KCV_BYTES];
	uint8_t root_hash[32];
	uint8_t *meta;			/* 2 * psize: pages 0 and 1 */
};

static void
key_check_value(const uint8_t *key, uint8_t out[KCV_BYTES])
{
	static const char what[] = "vaultd store journal kcv";

	crypto_generichash(out, KCV_BYTES, (const uint8_t *)what,
	    sizeof(what) - 1, key, WAL_KEY_BYTES);
}

static size_t
ckpt_len(uint32_t psize)
{
	return CKPT_FIXED + 2 * (size_t)psize + crypto_generichash_BYTES;
}

static int
ckpt_write(struct wal *w, const struct ckpt *c)
{
	size_t n = ckpt_len(c->psize);
	char path[4096];
	uint8_t *b;
	int r;

	if ((r = path_of(path, sizeof(path), w->dir, ckpt_name)) != 0)
		return r;
	if ((b = calloc(1, n)) == NULL)
		return VAULT_ERR_NOMEM;
	memcpy(b, CKPT_MAGIC, 16);
	store_put_u64(b + 16, c->seq);
	store_put_u64(b + 24, c->txnid);
	store_put_u32(b + 32, c->psize);
	store_put_u32(b + 36, c->cur);
	memcpy(b + 40, c->kcv, KCV_BYTES);
	memcpy(b + 56, c->root_hash, 32);
	memcpy(b + CKPT_FIXED, c->meta, 2 * (size_t)c->psize);
	crypto_generichash(b + n - crypto_generichash_BYTES,
	    crypto_generichash_BYTES, b, n - crypto_generichash_BYTES, NULL, 0);
	r = fsutil_write_atomic(path, b, n, 0600, FSUTIL_REPLACE, NULL);
	free(b);
	return r;
}

static uint64_t get_le64(const uint8_t *p);

/*
 * The hash of the page that holds the main database's root in the newer
 * of two meta pages, read from fd (all zeros for an empty database).
 */
static int
root_hash(int fd, const uint8_t *meta, uint32_t psize, uint8_t out[32])
{
	const uint8_t *m = meta;
	uint64_t root;
	uint8_t *page;
	int r = 0;

	if (get_le64(meta + psize + META_TXNID_OFF) > get_le64(meta +
	    META_TXNID_OFF))
		m = meta + psize;
	root = get_le64(m + META_MAIN_ROOT_OFF);
	memset(out, 0, 32);
	if (root == UINT64_MAX)
		return 0;
	if (root > (uint64_t)INT64_MAX / psize || (page = malloc(psize)) ==
	    NULL)
		return VAULT_ERR_STATE;
	if (pread(fd, page, psize, (off_t)(root * psize)) != (ssize_t)psize)
		r = VAULT_ERR_STATE;
	else
		crypto_generichash(out, 32, page, psize, NULL, 0);
	free(page);
	return r;
}

static uint64_t
get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static bool
meta_page_ok(const uint8_t *page)
{
	return get_le32(page + META_MAGIC_OFF) == LMDB_MAGIC;
}

/* Reads wal.ckpt: 0 (c->meta set), VAULT_ERR_NOT_FOUND, or damaged. */
static int
ckpt_read(const char *dir, struct ckpt *c, uint8_t **raw)
{
	char path[4096];
	uint8_t sum[crypto_generichash_BYTES];
	struct stat sb;
	size_t n;
	int fd, r;

	*raw = NULL;
	if ((r = path_of(path, sizeof(path), dir, ckpt_name)) != 0)
		return r;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == ENOENT ? VAULT_ERR_NOT_FOUND :
		    io_err(errno, "open", ckpt_name);
	if (fstat(fd, &sb) != 0 || sb.st_size < CKPT_FIXED ||
	    sb.st_size > (off_t)ckpt_len(65536) ||
	    (*raw = malloc((size_t)sb.st_size)) == NULL ||
	    pread(fd, *raw, (size_t)sb.st_size, 0) != sb.st_size) {
		close(fd);
		goto damaged;
	}
	close(fd);
	n = (size_t)sb.st_size;
	c->seq = store_get_u64(*raw + 16);
	c->txnid = store_get_u64(*raw + 24);
	c->psize = store_get_u32(*raw + 32);
	c->cur = store_get_u32(*raw + 36);
	memcpy(c->kcv, *raw + 40, KCV_BYTES);
	memcpy(c->root_hash, *raw + 56, 32);
	if (memcmp(*raw, CKPT_MAGIC, 16) != 0 || c->psize < 512 ||
	    c->psize > 65536 || n != ckpt_len(c->psize) || c->cur > 1)
		goto damaged;
	crypto_generichash(sum, sizeof(sum), *raw, n - sizeof(sum), NULL, 0);
	if (sodium_memcmp(sum, *raw + n - sizeof(sum), sizeof(sum)) != 0)
		goto damaged;
	c->meta = *raw + CKPT_FIXED;
	if (!meta_page_ok(c->meta) || !meta_page_ok(c->meta + c->psize))
		goto damaged;
	return 0;
damaged:
	log_error("store journal: %s/%s is damaged (not a checkpoint vaultd "
	    "wrote); the store cannot be recovered from it. Restore the store "
	    "from a backup", dir, ckpt_name);
	return VAULT_ERR_STATE;
}

int
wal_exists(const char *dir, bool *exists)
{
	char path[4096];
	int r;

	*exists = false;
	if ((r = path_of(path, sizeof(path), dir, ckpt_name)) != 0)
		return r;
	if (access(path, F_OK) == 0)
		*exists = true;
	else if (errno != ENOENT)
		return io_err(errno, "examine", ckpt_name);
	return 0;
}

int
wal_restore(const char *dir, struct wal_pending *out)
{
	char path[4096];
	uint8_t *raw = NULL, cur_meta[META_TXNID_OFF + 8], hash[32];
	uint64_t on_disk = 0;
	struct ckpt c;
	int fd = -1, r;

	memset(out, 0, sizeof(*out));
	if ((r = ckpt_read(dir, &c, &raw)) != 0)
		return r == VAULT_ERR_NOT_FOUND ? 0 : r;
	if ((r = path_of(path, sizeof(path), dir, data_name)) != 0)
		goto out;
	if ((fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		log_error("store journal: a checkpoint of the store is in %s, but "
		    "%s cannot be opened (%s): the store was lost; restore it "
		    "from a backup", dir, data_name, strerror(errno));
		r = VAULT_ERR_STATE;
		goto out;
	}
	if (root_hash(fd, c.meta, c.psize, hash) != 0 ||
	    sodium_memcmp(hash, c.root_hash, 32) != 0) {
		log_error("store journal: %s was replaced after vaultd stopped "
		    "without closing it: its journal (%s, wal.0, wal.1) belongs "
		    "to the file it replaced. To serve the replacement as it is, "
		    "losing the journaled writes, remove those three files",
		    data_name, ckpt_name);
		r = VAULT_ERR_STATE;
		goto out;
	}
	/* Where a meta page survived, it must not be older than the checkpoint. */
	for (int i = 0; i < 2; i++)
		if (pread(fd, cur_meta, sizeof(cur_meta), (off_t)i * c.psize) ==
		    (ssize_t)sizeof(cur_meta) && meta_page_ok(cur_meta) &&
		    get_le64(cur_meta + META_TXNID_OFF) > on_disk)
			on_disk = get_le64(cur_meta + META_TXNID_OFF);
	if (on_disk != 0 && on_disk < c.txnid) {
		log_error("store journal: %s is older than its journal's "
		    "checkpoint (transaction %llu, the checkpoint's %llu): it was "
		    "replaced or rolled back; restore the store from a backup",
		    data_name, (unsigned long long)on_disk,
		    (unsigned long long)c.txnid);
		r = VAULT_ERR_STATE;
		goto out;
	}
	if ((r = write_all(fd, c.meta, 2 * (size_t)c.psize, 0)) != 0 ||
	    fdatasync(fd) != 0) {
		r = io_err(r != 0 ? r : errno, "restore the checkpoint into",
		    data_name);
		goto out;
	}
	log_info("store journal: vaultd stopped without closing the store; "
	    "recovering from the checkpoint of journal record %llu",
	    (unsigned long long)c.seq);
	out->pending = true;
	out->seq = c.seq;
	out->txnid = c.txnid;
	out->cur = c.cur;
	memcpy(out->kcv, c.kcv, sizeof(out->kcv));
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(raw);
	return r;
}

/* ------------------------------------------------------------ replay */

struct collect {
	struct wal_rec *recs;
	size_t n, cap;
	uint64_t next;			/* the seq the chain expects */
	bool broke;			/* a record out of sequence */
};

static int
collect_rec(const struct wal_rec *rec, void *arg)
{
	struct collect *c = arg;

	if (rec->seq != c->next) {
		c->broke = true;
		return 1;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct wal_rec *p = realloc(c->recs, cap * sizeof(*p));

		if (p == NULL)
			return VAULT_ERR_NOMEM;
		c->recs = p;
		c->cap = cap;
	}
	c->recs[c->n++] = *rec;
	c->next++;
	return 0;
}

struct apply {
	const struct wal_store *s;
	MDB_txn *t;
};

static int
apply_op(enum wal_op op, enum store_space sp, const uint8_t *key, size_t klen,
    const uint8_t *val, size_t vlen, void *arg)
{
	struct apply *a = arg;
	MDB_dbi dbi = a->s->dbi[sp];
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	MDB_cursor *cur;
	int rc;

	switch (op) {
	case WAL_PUT:
		rc = mdb_put(a->t, dbi, &k, &v, 0);
		break;
	case WAL_DEL:
		rc = mdb_del(a->t, dbi, &k, vlen > 0 ? &v : NULL);
		break;
	default:
		if ((rc = mdb_cursor_open(a->t, dbi, &cur)) != 0)
			break;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
		    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (k.mv_size < klen || memcmp(k.mv_data, key, klen) != 0)
				break;
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
		}
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	if (rc != 0) {
		log_error("store journal: a journaled %s in %s does not apply to "
		    "the checkpoint: %s", op == WAL_PUT ? "put" : "delete",
		    store_space_name(sp), mdb_strerror(rc));
		return VAULT_ERR_STATE;
	}
	return 0;
}

/* The records after the checkpoint, in order: seg[cur], then the other. */
static int
chain(const char *dir, const struct wal_pending *p, const uint8_t *key,
    uint8_t *seg[2], size_t seg_len[2], struct collect *c)
{
	const int order[2] = { (int)p->cur, 1 - (int)p->cur };
	int r;

	c->next = p->seq + 1;
	for (int j = 0; j < 2; j++) {
		int i = order[j];
		const char *why;
		size_t end;
		bool torn;

		if ((r = read_segment(dir, i, &seg[i], &seg_len[i])) != 0)
			return r;
		if (j == 1) {
			/* The other one continues the chain only after a switch. */
			if (seg_len[i] < HDR || store_get_u32(seg[i]) != WAL_MAGIC ||
			    store_get_u64(seg[i] + 8) != c->next)
				return 0;
		}
		r = wal_parse(seg[i], seg_len[i], key, collect_rec, c, &end,
		    &torn, &why);
		if (r < 0 && r != VAULT_ERR_STATE)
			return r;
		if (r == VAULT_ERR_STATE || c->broke) {
			log_error("store journal: %s/%s is damaged at byte %zu (%s): "
			    "it was changed by something other than vaultd. To "
			    "start, losing the writes journaled from there on, "
			    "cut it there (truncate -s %zu); or restore the store "
			    "from a backup", dir, seg_name[i], end, why != NULL ?
			    why : "a record out of sequence", end);
			return VAULT_ERR_STATE;
		}
		if (torn) {
			log_warn("store journal: the last record of %s was cut "
			    "short by the crash (never acknowledged); dropped",
			    seg_name[i]);
			return 0;
		}
	}
	return 0;
}

/* Zeroes both segments, then removes wal.ckpt (no recovery needed). */
static int
settle(const char *dir)
{
	char path[4096];
	int fd, r;

	if ((r = path_of(path, sizeof(path), dir, ckpt_name)) != 0)
		return r;
	if (unlink(path) != 0 && errno != ENOENT)
		return io_err(errno, "remove", ckpt_name);
	if ((r = fsutil_sync_dir(dir)) != 0)
		return r;
	for (int i = 0; i < 2; i++) {
		char sp[4096];
		off_t size;

		if ((r = path_of(sp, sizeof(sp), dir, seg_name[i])) != 0)
			return r;
		if ((fd = open(sp, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
			if (errno == ENOENT)
				continue;
			return io_err(errno, "open", seg_name[i]);
		}
		r = zero_segment(fd, -1, 0, &size, seg_name[i]);
		close(fd);
		if (r != 0)
			return r;
	}
	return 0;
}

int
wal_replay(const struct wal_store *s, const char *dir,
    const struct wal_pending *p, const uint8_t key[WAL_KEY_BYTES],
    uint64_t *applied)
{
	struct collect c = { 0 };
	uint8_t *seg[2] = { NULL, NULL };
	size_t seg_len[2] = { 0, 0 };
	int rc, r;

	*applied = 0;
	/* The pin (wal_pin) holds the checkpoint's pages until settled. */
	if (p->pin == NULL || mdb_txn_id(p->pin) != p->txnid) {
		log_error("store journal: the restored store is at transaction "
		    "%zu, its checkpoint at %llu; restore the store from a backup",
		    p->pin != NULL ? mdb_txn_id(p->pin) : (size_t)0,
		    (unsigned long long)p->txnid);
		return VAULT_ERR_STATE;
	}
	{
		uint8_t kcv[KCV_BYTES];

		key_check_value(key, kcv);
		if (sodium_memcmp(kcv, p->kcv, KCV_BYTES) != 0) {
			log_error("store journal: it was written under another key "
			    "than this vault's; the journaled writes cannot be "
			    "checked. Restore the store from a backup");
			return VAULT_ERR_STATE;
		}
	}
	if ((r = chain(dir, p, key, seg, seg_len, &c)) != 0)
		goto out;
	mdb_env_set_flags(s->env, MDB_NOSYNC, 1);
	for (size_t i = 0; i < c.n; i++) {
		struct apply a = { s, NULL };

		if ((rc = mdb_txn_begin(s->env, NULL, 0, &a.t)) != 0) {
			r = s->err(s->st, rc, "replay the journal");
			break;
		}
		if ((r = wal_body_ops(c.recs[i].body, c.recs[i].len, apply_op,
		    &a)) != 0) {
			mdb_txn_abort(a.t);
			if (r == VAULT_ERR_STATE)
				log_error("store journal: record %llu cannot be "
				    "replayed; restore the store from a backup",
				    (unsigned long long)c.recs[i].seq);
			break;
		}
		if ((rc = mdb_txn_commit(a.t)) != 0) {
			r = s->err(s->st, rc, "replay the journal");
			break;
		}
		VAULT_CRASH_POINT("recover.replaying");
		(*applied)++;
	}
	mdb_env_set_flags(s->env, MDB_NOSYNC, 0);
	if (r != 0)
		goto out;
	if ((rc = mdb_env_sync(s->env, 1)) != 0) {
		r = s->err(s->st, rc, "sync the replayed store");
		goto out;
	}
	VAULT_CRASH_POINT("recover.replayed");
	r = settle(dir);
	if (r == 0)
		log_info("store journal: %llu journaled write(s) replayed after "
		    "the checkpoint", (unsigned long long)*applied);
out:
	free(c.recs);
	free(seg[0]);
	free(seg[1]);
	return r;
}

/* ------------------------------------------------------------ journaling */

/* Marks the journal unusable: every later commit and the store refused. */
static void
set_broken(struct wal *w, const char *why)
{
	log_error("store journal: %s; refusing further writes (restart "
	    "vaultd to recover from the journal)", why);
	w->broken = true;
	w->s.st->failed = 1;
}

/*
 * Erases bytes appended for a commit that did not happen, synced (the
 * kernel may have written them already). Under mu.
 */
static void
unappend(struct wal *w, off_t off, size_t n)
{
	static const uint8_t zeros[4096];
	int fd = w->seg_fd[w->cur];

	for (size_t done = 0; done < n; ) {
		size_t k = n - done < sizeof(zeros) ? n - done : sizeof(zeros);

		if (write_all(fd, zeros, k, off + (off_t)done) != 0) {
			set_broken(w, "a record of a failed commit cannot be erased");
			return;
		}
		done += k;
	}
	if (fdatasync(fd) != 0)
		set_broken(w, "a record of a failed commit cannot be erased");
}

int
wal_commit(struct wal *w, MDB_txn *t, const struct wal_buf *ops, bool durable)
{
	uint8_t hdr[HDR], mac[MAC_BYTES];
	struct iovec iov[3];
	MDB_envinfo info;
	size_t n, done;
	off_t off;
	int fd, rc = 0, err, r = 0;

	pthread_mutex_lock(&w->mu);
	if (w->broken) {
		mdb_txn_abort(t);
		pthread_mutex_unlock(&w->mu);
		return VAULT_ERR_UNAVAILABLE;
	}
	if (ops == NULL || ops->len == 0) {
		/* Nothing changed: nothing to journal. */
		rc = mdb_txn_commit(t);
		goto out;
	}
	if (ops->len > REC_MAX) {
		mdb_txn_abort(t);
		log_error("store journal: a transaction of %zu bytes of writes is "
		    "larger than a record may be (%zu)", ops->len, REC_MAX);
		r = VAULT_ERR_LIMIT;
		goto out;
	}
	store_put_u32(hdr, WAL_MAGIC);
	store_put_u32(hdr + 4, (uint32_t)ops->len | (durable ? LEN_DURABLE : 0));
	store_put_u64(hdr + 8, w->next_seq);
	mac_of(w->key, hdr, ops->p, ops->len, mac);
	iov[0] = (struct iovec){ hdr, HDR };
	iov[1] = (struct iovec){ ops->p, ops->len };
	iov[2] = (struct iovec){ mac, MAC_BYTES };
	n = HDR + ops->len + MAC_BYTES;
	fd = w->seg_fd[w->cur];
	off = w->end[w->cur];
	for (done = 0, err = 0; done < n && err == 0; ) {
		ssize_t k = pwritev(fd, iov, 3, off + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			err = k < 0 ? errno : EIO;
			break;
		}
		done += (size_t)k;
		/* Skip what was written. */
		for (int i = 0; i < 3 && k > 0; i++) {
			size_t m = (size_t)k < iov[i].iov_len ? (size_t)k :
			    iov[i].iov_len;

			iov[i].iov_base = (uint8_t *)iov[i].iov_base + m;
			iov[i].iov_len -= m;
			k -= (ssize_t)m;
		}
	}
	if (err != 0) {
		mdb_txn_abort(t);
		r = io_err(err, "append to", seg_name[w->cur]);
		unappend(w, off, n);
		goto out;
	}
	/* After a failed fdatasync the kernel may drop the pages: fatal. */
	if (durable && fdatasync(fd) != 0) {
		mdb_txn_abort(t);
		r = io_err(errno, "sync", seg_name[w->cur]);
		set_broken(w, "the journal cannot be synced");
		goto out;
	}
	VAULT_CRASH_POINT("wal.appended");
	if ((rc = mdb_txn_commit(t)) != 0) {
		unappend(w, off, n);
		goto out;
	}
	w->end[w->cur] += (off_t)n;
	w->next_seq++;
	if (!w->want && (w->end[w->cur] >= (off_t)WAL_SEGMENT_BYTES ||
	    (mdb_env_info(w->s.env, &info) == 0 &&
	    info.me_last_pgno >= w->grow_mark))) {
		w->want = true;
		pthread_cond_signal(&w->cv);
	}
out:
	pthread_mutex_unlock(&w->mu);
	/* Not under the lock: a full map asks for a checkpoint (wal_nudge). */
	return rc != 0 ? w->s.err(w->s.st, rc, "commit") : r;
}

int
wal_sync(struct wal *w)
{
	int fd, r;

	pthread_mutex_lock(&w->mu);
	fd = w->seg_fd[w->cur];
	pthread_mutex_unlock(&w->mu);
	/* A switch since synced the segment before it. */
	if (fdatasync(fd) == 0)
		return 0;
	r = io_err(errno, "sync", "the journal");
	pthread_mutex_lock(&w->mu);
	set_broken(w, "the journal cannot be synced");
	pthread_mutex_unlock(&w->mu);
	return r;
}

/*
 * A checkpoint (wal.h). force: also when nothing was appended since the
 * last one (the first).
 */
static int
checkpoint(struct wal *w, bool force)
{
	struct ckpt c = { 0 };
	MDB_envinfo info;
	MDB_txn *pin = NULL;
	uint8_t *meta;
	int old, rc, r;
	off_t size;

	if ((meta = malloc(2 * (size_t)w->psize)) == NULL)
		return VAULT_ERR_NOMEM;
	pthread_mutex_lock(&w->mu);
	c.seq = w->next_seq - 1;
	if ((!force && c.seq == w->ckpt_seq) || w->broken) {
		pthread_mutex_unlock(&w->mu);
		free(meta);
		return w->broken ? VAULT_ERR_UNAVAILABLE : 0;
	}
	/* Committed pages never change while a snapshot holds them. */
	if (pread(w->data_fd, meta, 2 * (size_t)w->psize, 0) !=
	    2 * (ssize_t)w->psize || root_hash(w->data_fd, meta, w->psize,
	    c.root_hash) != 0) {
		pthread_mutex_unlock(&w->mu);
		free(meta);
		return io_err(errno != 0 ? errno : EIO, "read the meta pages of",
		    data_name);
	}
	if ((rc = mdb_txn_begin(w->s.env, NULL, MDB_RDONLY, &pin)) != 0) {
		pthread_mutex_unlock(&w->mu);
		free(meta);
		return w->s.err(w->s.st, rc, "checkpoint");
	}
	old = w->cur;
	if (w->end[old] > 0 && fdatasync(w->seg_fd[old]) != 0) {
		set_broken(w, "the journal cannot be synced");
		pthread_mutex_unlock(&w->mu);
		mdb_txn_abort(pin);
		free(meta);
		return VAULT_ERR_IO;
	}
	w->cur = 1 - old;
	c.txnid = mdb_txn_id(pin);
	if (mdb_env_info(w->s.env, &info) == 0) {
		w->ckpt_pgno = info.me_last_pgno;
		w->grow_mark = info.me_last_pgno + w->grow_pages;
	}
	w->pressure = false;
	w->ckpt_ms = time_monotonic_ms();
	pthread_mutex_unlock(&w->mu);
	VAULT_CRASH_POINT("wal.switched");

	key_check_value(w->key, c.kcv);
	c.psize = w->psize;
	c.cur = (uint32_t)w->cur;
	c.meta = meta;
	if ((rc = mdb_env_sync(w->s.env, 1)) != 0)
		r = w->s.err(w->s.st, rc, "sync the store for a checkpoint");
	else
		r = ckpt_write(w, &c);
	free(meta);
	if (r != 0) {
		/* The old segment stays: a recovery may need it. */
		mdb_txn_abort(pin);
		pthread_mutex_lock(&w->mu);
		set_broken(w, "a checkpoint cannot be written");
		pthread_mutex_unlock(&w->mu);
		return r;
	}
	VAULT_CRASH_POINT("wal.checkpointed");
	if (w->pin != NULL)
		mdb_txn_abort(w->pin);
	w->pin = pin;
	w->ckpt_seq = c.seq;
	/* The old segment's records are all in the checkpoint: erase them. */
	r = zero_segment(w->seg_fd[old], w->end[old], w->size[old], &size,
	    seg_name[old]);
	pthread_mutex_lock(&w->mu);
	if (r != 0)
		set_broken(w, "a journal segment cannot be erased");
	w->end[old] = 0;
	w->size[old] = size;
	pthread_mutex_unlock(&w->mu);
	return r;
}

void
wal_wait_room(struct wal *w)
{
	MDB_envinfo info;
	size_t hard, near_end;
	bool urgent;

	if (mdb_env_info(w->s.env, &info) != 0)
		return;
	pthread_mutex_lock(&w->mu);
	hard = w->grow_mark + GROW_HARD * w->grow_pages;
	/*
	 * Near the map's end, what the snapshot pins may be all the room there
	 * is: a checkpoint before the write while the file still grows (the
	 * free pages it may reuse ran out), after the map was full, or when
	 * the last one is NEAR_END_MS old (at most so many a second).
	 */
	urgent = info.me_last_pgno > w->ckpt_pgno || w->pressure ||
	    time_monotonic_ms() - w->ckpt_ms >= NEAR_END_MS;
	pthread_mutex_unlock(&w->mu);
	near_end = info.me_mapsize / w->psize - (GROW_HARD + 1) * w->grow_pages;
	if ((info.me_last_pgno >= hard || (info.me_last_pgno >= near_end &&
	    urgent)) && wal_checkpoint(w) != 0)
		log_warn("store journal: a checkpoint to free pages failed");
}

void
wal_nudge(struct wal *w)
{
	pthread_mutex_lock(&w->mu);
	w->pressure = true;
	if (!w->want) {
		w->want = true;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
}

int
wal_checkpoint(struct wal *w)
{
	int r;

	pthread_mutex_lock(&w->ck_mu);
	r = checkpoint(w, false);
	pthread_mutex_unlock(&w->ck_mu);
	return r;
}

static void *
wal_main(void *arg)
{
	struct wal *w = arg;

	pthread_setname_np(pthread_self(), "vaultd-wal");
	pthread_mutex_lock(&w->mu);
	while (!w->stopping) {
		struct timespec ts = time_after_ms(WAL_CHECKPOINT_MS);

		while (!w->want && !w->stopping &&
		    pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
			;
		if (w->stopping)
			break;
		w->want = false;
		pthread_mutex_unlock(&w->mu);
		if (wal_checkpoint(w) != 0)
			log_error("store journal: a checkpoint failed");
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void
wal_free(struct wal *w)
{
	for (int i = 0; i < 2; i++)
		if (w->seg_fd[i] >= 0)
			close(w->seg_fd[i]);
	if (w->data_fd >= 0)
		close(w->data_fd);
	if (w->pin != NULL)
		mdb_txn_abort(w->pin);
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->ck_mu);
	pthread_cond_destroy(&w->cv);
	sodium_memzero(w->key, sizeof(w->key));
	free(w->dir);
	free(w);
}

int
wal_start(struct wal **out, const struct wal_store *s, const char *dir,
    const uint8_t key[WAL_KEY_BYTES])
{
	char path[4096];
	struct wal *w;
	MDB_envinfo info;
	MDB_stat ms;
	bool checkpointed = false;
	int r;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return VAULT_ERR_NOMEM;
	w->seg_fd[0] = w->seg_fd[1] = w->data_fd = -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->ck_mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->s = *s;
	w->next_seq = 1;
	memcpy(w->key, key, WAL_KEY_BYTES);
	if ((w->dir = strdup(dir)) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		if ((r = path_of(path, sizeof(path), dir, seg_name[i])) != 0)
			goto fail;
		if ((w->seg_fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC |
		    O_NOFOLLOW, 0600)) < 0) {
			r = io_err(errno, "create", seg_name[i]);
			goto fail;
		}
		if ((r = zero_segment(w->seg_fd[i], -1, SEG_PREALLOC, &w->size[i],
		    seg_name[i])) != 0)
			goto fail;
	}
	if ((r = fsutil_sync_dir(dir)) != 0 ||
	    (r = path_of(path, sizeof(path), dir, data_name)) != 0)
		goto fail;
	if ((w->data_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		r = io_err(errno, "open", data_name);
		goto fail;
	}
	if (mdb_env_stat(s->env, &ms) != 0) {
		r = VAULT_ERR_STORE;
		goto fail;
	}
	w->psize = ms.ms_psize;
	if (mdb_env_info(s->env, &info) != 0) {
		r = VAULT_ERR_STORE;
		goto fail;
	}
	/* A 128th of the map, between 64 pages and GROW_MAX_BYTES. */
	w->grow_pages = info.me_mapsize / w->psize / 128;
	if (w->grow_pages < 64)
		w->grow_pages = 64;
	if (w->grow_pages > GROW_MAX_BYTES / w->psize)
		w->grow_pages = GROW_MAX_BYTES / w->psize;
	mdb_env_set_flags(s->env, MDB_NOSYNC, 1);
	checkpointed = true;
	if ((r = checkpoint(w, true)) != 0)
		goto fail;
	if ((errno = pthread_create(&w->thread, NULL, wal_main, w)) != 0) {
		log_error("store journal: cannot start its thread: %s",
		    strerror(errno));
		r = VAULT_ERR_STATE;
		goto fail;
	}
	w->started = true;
	*out = w;
	return 0;
fail:
	/* No checkpoint may outlive a journal that never ran. */
	if (checkpointed) {
		mdb_env_set_flags(s->env, MDB_NOSYNC, 0);
		if (mdb_env_sync(s->env, 1) != 0 || settle(dir) != 0)
			s->st->failed = 1;
	} else {
		/* Zeros only, or nothing yet: their room goes back to the disk. */
		for (int i = 0; i < 2; i++)
			if (path_of(path, sizeof(path), dir, seg_name[i]) == 0)
				(void)unlink(path);
	}
	wal_free(w);
	return r;
}

void
wal_stop(struct wal *w)
{
	int rc;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->started)
		pthread_join(w->thread, NULL);
	/* No commit runs now: the writer stopped before the store closes. */
	pthread_mutex_lock(&w->ck_mu);
	if (w->broken || w->s.st->failed)
		log_warn("store journal: left for the next start to recover from");
	else if ((rc = mdb_env_sync(w->s.env, 1)) != 0)
		(void)w->s.err(w->s.st, rc, "sync the store at close");
	else if (settle(w->dir) != 0)
		log_warn("store journal: left for the next start to recover from");
	pthread_mutex_unlock(&w->ck_mu);
	mdb_env_set_flags(w->s.env, MDB_NOSYNC, 0);
	wal_free(w);
}
