/*
 * vaultbench layout --dev-dir DIR --consumers N
 *
 * Three ways to cut a consumer into records (issue 16, point 3), written
 * through the store layer (LMDB, without the store journal) with the
 * engine's own record functions, so they differ only in the cut:
 *
 *   per-attribute  10 records record_seal_attr(ref, name, value), and the
 *                  manifest record_manifest_seal(entries) (vaultd's layout
 *                  until 2026-12-04, still read: consumer formats 1 and 2)
 *   one sealed     record_seal_attr(ref, "*", blob): the blob lists every
 *                  attribute as name length | name | updated | value
 *                  length | value; the seal covers all of them, so it is
 *                  its own manifest (measured, not built)
 *   values record  record_values_seal(names, times, values): the names,
 *                  times and lengths in the clear, bound as associated
 *                  data, the values under one seal (vaultd's layout since
 *                  2026-12-04)
 *
 * The consumer record (the wrapped DEK), the audit log and the indexes are
 * the same in both and left out. Per layout: bytes per consumer in the data
 * file after loading N consumers of the bench's 10 attributes (50 to a
 * transaction), then, over N/10 consumers drawn at random (with
 * repeats), 500 to a transaction: a full put (10 attributes), a partial
 * put (1 attribute), a get of every attribute and a get of one. A put
 * writes the values the load wrote, with a new time: the records keep
 * their sizes. One line per figure:
 *   layout <figure> <per-attribute> <one sealed> <values record>
 *     <values record / per-attribute>
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "bench.h"
#include "crypto/crypto.h"
#include "engine/record.h"
#include "store/store.h"

#define N_ATTRS 10
#define PER_TXN 500
#define LOAD_PER_TXN 50
#define WHOLE "*"		/* the one record's name in its bound context */
#define BLOB_MAX 1024

enum layout { PER_ATTR, ONE_RECORD, VALUES, LAYOUTS };
static const char *const layout_dir[LAYOUTS] = { "per-attribute",
    "one-sealed", "values-record" };

struct bench_ctx {
	struct store *st;
	enum layout lay;
	uint8_t index_key[CRYPTO_KEY_BYTES];
	uint64_t now;		/* each operation's updated time */
};

/* Consumer i's ref and DEK (random in vaultd: here derived from i). */
static void
consumer_keys(long i, uint8_t ref[CRYPTO_REF_BYTES],
    uint8_t dek[CRYPTO_KEY_BYTES])
{
	uint8_t in[9] = { 'r' };

	memcpy(in + 1, &i, sizeof(i));
	crypto_generichash(ref, CRYPTO_REF_BYTES, in, sizeof(in), NULL, 0);
	in[0] = 'k';
	crypto_generichash(dek, CRYPTO_KEY_BYTES, in, sizeof(in), NULL, 0);
}

static void
check(int r, const char *what)
{
	if (r != 0)
		bench_die(what);
}

/* The one record's blob (BLOB_MAX bytes): every attribute of vals. */
static size_t
blob_of(char vals[N_ATTRS][40], uint64_t now, uint8_t *blob)
{
	size_t n = 0;

	for (int a = 0; a < N_ATTRS; a++) {
		size_t nl = strlen(bench_attr_names[a]), vl = strlen(vals[a]);

		if (n + 1 + nl + 9 + vl > BLOB_MAX || nl > 255 || vl > 255)
			bench_die("blob too long");

		blob[n++] = (uint8_t)nl;
		memcpy(blob + n, bench_attr_names[a], nl);
		n += nl;
		store_put_u64(blob + n, now);
		n += 8;
		blob[n++] = (uint8_t)vl;
		memcpy(blob + n, vals[a], vl);
		n += vl;
	}
	return n;
}

/*
 * Finds attribute name in a blob of len bytes; its value and length, or
 * NULL. Each entry's lengths are checked against the blob's end.
 */
static const uint8_t *
blob_find(const uint8_t *blob, size_t len, const char *name, size_t *vl)
{
	size_t nl = strlen(name), p = 0;

	while (p < len) {
		size_t l = blob[p], v;

		if (len - p < 1 + l + 9)
			bench_die("a malformed blob");
		v = blob[p + 1 + l + 8];
		if (len - p - (1 + l + 9) < v)
			bench_die("a malformed blob");
		if (l == nl && memcmp(blob + p + 1, name, nl) == 0) {
			*vl = v;
			return blob + p + 1 + l + 9;
		}
		p += 1 + l + 9 + v;
	}
	return NULL;
}

/* Seals blob as ref's one record and stores it. */
static void
put_blob(struct bench_ctx *c, struct store_txn *txn, const uint8_t *ref,
    const uint8_t *dek, const uint8_t *blob, size_t len)
{
	static uint8_t rec[RECORD_ATTR_MAX];
	size_t rlen;

	check(record_seal_attr(dek, ref, WHOLE, 1, (const char *)blob, len,
	    c->now, rec, &rlen), "seal");
	check(store_put(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, rec, rlen, 0),
	    "put");
}

/*
 * The values record layout: of a consumer already stored, the record is
 * read and opened, the attributes put are set in it, and it is sealed
 * again and stored (as put_apply does).
 */
static void
put_values(struct bench_ctx *c, struct store_txn *txn, const uint8_t *ref,
    const uint8_t *dek, char vals[N_ATTRS][40], int from, int to,
    bool existing)
{
	static struct value_list l;
	static uint8_t names[BLOB_MAX], plain[BLOB_MAX], out[BLOB_MAX * 2];
	size_t rlen;

	l.n = 0;
	if (existing) {
		struct store_val v;
		size_t off = 0;

		check(store_get(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, &v),
		    "get");
		check(record_values_open(dek, ref, 1, &v, plain, sizeof(plain),
		    &l), "open");
		/* The names point into the store: copied before the write. */
		for (size_t e = 0; e < l.n; e++) {
			memcpy(names + off, l.e[e].name, l.e[e].name_len);
			l.e[e].name = names + off;
			off += l.e[e].name_len;
		}
	}
	for (int a = from; a < to; a++)
		check(record_values_set(&l, (const uint8_t *)bench_attr_names[a],
		    strlen(bench_attr_names[a]), c->now, (const uint8_t *)vals[a],
		    strlen(vals[a])), "set");
	rlen = record_values_size(&l);
	if (rlen > sizeof(out))
		bench_die("values record too long");
	check(record_values_seal(dek, ref, 1, &l, out), "seal");
	check(store_put(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, out, rlen, 0),
	    "put");
}

/*
 * Puts attributes [from, to) of vals, as the layout does. Of a consumer
 * already stored (existing), vaultd reads the manifest first; the one
 * record is read only when the put leaves attributes as they were (the
 * bench's consumers have no attributes beyond the 10 a full put writes).
 */
static void
put_attrs(struct bench_ctx *c, struct store_txn *txn, long i,
    char vals[N_ATTRS][40], int from, int to, bool existing)
{
	uint8_t ref[CRYPTO_REF_BYTES], dek[CRYPTO_KEY_BYTES];
	uint8_t key[RECORD_ATTR_KEY_MAX], rec[RECORD_ATTR_MAX];
	static uint8_t man[RECORD_MANIFEST_MAX];
	struct manifest_entry e[N_ATTRS];
	size_t n = 0, rlen;

	consumer_keys(i, ref, dek);
	if (c->lay == VALUES) {
		put_values(c, txn, ref, dek, vals, from, to, existing);
		return;
	}
	if (c->lay == ONE_RECORD) {
		uint8_t blob[BLOB_MAX];
		size_t len;

		if (existing && to - from < N_ATTRS) {	/* read, change, reseal */
			struct store_val v;
			uint64_t at;

			check(store_get(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, &v),
			    "get");
			check(record_open_attr(dek, ref, WHOLE, 1, &v, blob,
			    sizeof(blob), &len, &at), "open");
			/* The value the load wrote: the length stays. */
			for (int a = from; a < to; a++) {
				size_t vl;
				uint8_t *p = (uint8_t *)blob_find(blob, len,
				    bench_attr_names[a], &vl);

				if (p == NULL || vl != strlen(vals[a]))
					bench_die("blob");
				memcpy(p, vals[a], vl);
				store_put_u64(p - 9, c->now);
			}
		} else {
			len = blob_of(vals, c->now, blob);
		}
		put_blob(c, txn, ref, dek, blob, len);
		return;
	}
	for (int a = from; a < to; a++) {
		size_t kl = record_attr_key(key, ref, bench_attr_names[a]);

		check(record_seal_attr(dek, ref, bench_attr_names[a], 1, vals[a],
		    strlen(vals[a]), c->now, rec, &rlen), "seal");
		check(store_put(txn, STORE_ATTRS, key, kl, rec, rlen, 0), "put");
	}
	/* The manifest names every attribute with its time (as put_apply). */
	for (int a = 0; a < N_ATTRS; a++)
		check(record_manifest_set(e, &n, N_ATTRS, bench_attr_names[a],
		    strlen(bench_attr_names[a]), c->now), "manifest");
	if (existing) {
		struct store_val v;
		struct manifest m;

		check(store_get(txn, STORE_MANIFESTS, ref, CRYPTO_REF_BYTES, &v),
		    "get manifest");
		check(record_manifest_open(c->index_key, ref, &v, &m),
		    "manifest open");
	}
	rlen = record_manifest_seal(c->index_key, ref, e, n, man);
	check(store_put(txn, STORE_MANIFESTS, ref, CRYPTO_REF_BYTES, man, rlen,
	    0), "put manifest");
}

/* Opens attribute `one` (-1: every one) of consumer i; how many opened. */
static int
get_attrs(struct bench_ctx *c, struct store_txn *txn, long i, int one)
{
	uint8_t ref[CRYPTO_REF_BYTES], dek[CRYPTO_KEY_BYTES];
	uint8_t out[BLOB_MAX], key[RECORD_ATTR_KEY_MAX];
	struct store_val v, k;
	struct store_cursor *cur;
	struct manifest m;
	size_t len, vl;
	uint64_t at;
	int got = 0, rc;

	consumer_keys(i, ref, dek);
	if (c->lay == VALUES) {
		static struct value_list l;

		check(store_get(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, &v),
		    "get");
		check(record_values_open(dek, ref, 1, &v, out, sizeof(out), &l),
		    "open");
		if (one < 0)
			return (int)l.n;
		return record_values_find(&l, bench_attr_names[one],
		    strlen(bench_attr_names[one])) >= 0;
	}
	if (c->lay == ONE_RECORD) {
		check(store_get(txn, STORE_ATTRS, ref, CRYPTO_REF_BYTES, &v),
		    "get");
		check(record_open_attr(dek, ref, WHOLE, 1, &v, out, sizeof(out),
		    &len, &at), "open");
		for (int a = 0; a < N_ATTRS; a++)
			if ((one < 0 || a == one) && blob_find(out, len,
			    bench_attr_names[a], &vl) != NULL)
				got++;
		return got;
	}
	check(store_get(txn, STORE_MANIFESTS, ref, CRYPTO_REF_BYTES, &v),
	    "get manifest");
	check(record_manifest_open(c->index_key, ref, &v, &m), "manifest");
	if (one >= 0) {
		size_t kl = record_attr_key(key, ref, bench_attr_names[one]);

		check(store_get(txn, STORE_ATTRS, key, kl, &v), "get");
		check(record_open_attr(dek, ref, bench_attr_names[one], 1, &v,
		    out, sizeof(out), &len, &at), "open");
		return 1;
	}
	/* Every record: one cursor walk over ref's adjacent records. */
	check(store_cursor_open(txn, STORE_ATTRS, &cur), "cursor");
	k = (struct store_val){ CRYPTO_REF_BYTES, ref };
	for (rc = store_cursor_get(cur, &k, &v, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &v, STORE_NEXT)) {
		char name[SCHEMA_NAME_MAX];
		size_t nl = k.len - CRYPTO_REF_BYTES;

		if (k.len <= CRYPTO_REF_BYTES || nl >= sizeof(name) ||
		    memcmp(k.data, ref, CRYPTO_REF_BYTES) != 0)
			break;
		memcpy(name, (const uint8_t *)k.data + CRYPTO_REF_BYTES, nl);
		name[nl] = '\0';
		check(record_open_attr(dek, ref, name, 1, &v, out, sizeof(out),
		    &len, &at), "open");
		got++;
	}
	store_cursor_close(cur);
	return got;
}

/* n consumers drawn at random, with repeats, out of the loaded ones. */
static long *
sample(long loaded, long n)
{
	long *ids = malloc((size_t)n * sizeof(*ids));

	if (ids == NULL)
		bench_die("memory");
	for (long j = 0; j < n; j++)
		ids[j] = (long)randombytes_uniform((uint32_t)loaded);
	return ids;
}

enum op { FULL_PUT, PARTIAL_PUT, GET_ALL, GET_ONE, OPS };
static const char *const op_name[OPS] = { "full-put/s", "partial-put/s",
    "get-all/s", "get-one/s" };

static double
run_op(struct bench_ctx *c, enum op op, const long *ids, long n)
{
	struct store_txn *txn;
	char vals[N_ATTRS][40];
	double t0 = bench_now();
	long opened = 0;

	for (long j = 0; j < n; j += PER_TXN) {
		bool write = op == FULL_PUT || op == PARTIAL_PUT;

		check(write ? store_write_begin(c->st, &txn) :
		    store_read_begin(c->st, &txn), "begin");
		for (long q = j; q < n && q < j + PER_TXN; q++) {
			bench_attributes(ids[q], vals);
			c->now++;
			if (op == FULL_PUT)
				put_attrs(c, txn, ids[q], vals, 0, N_ATTRS,
				    true);
			else if (op == PARTIAL_PUT)
				put_attrs(c, txn, ids[q], vals, 3, 4, true);
			else
				opened += get_attrs(c, txn, ids[q],
				    op == GET_ONE ? 3 : -1);
		}
		if (write)
			check(store_write_commit(txn), "commit");
		else
			store_read_end(txn);
	}
	if (op == GET_ALL && opened != n * N_ATTRS)
		bench_die("a get missed attributes");
	return (double)n / (bench_now() - t0);
}

int
bench_layout_main(const char *dir, long consumers)
{
	double fig[OPS + 1][LAYOUTS];
	char path[4096];
	long *ids;

	if (crypto_init() != 0)
		bench_die("libsodium");
	ids = sample(consumers, consumers / 10 > 0 ? consumers / 10 : 1);
	for (int lay = 0; lay < LAYOUTS; lay++) {
		struct bench_ctx c = { .lay = (enum layout)lay, .now = 1 };
		struct store_usage u;
		struct store_txn *txn;
		char vals[N_ATTRS][40];

		memset(c.index_key, 7, sizeof(c.index_key));
		snprintf(path, sizeof(path), "%s/%s", dir, layout_dir[lay]);
		if (mkdir(path, 0700) != 0)
			bench_die("cannot make the store directory (must be new)");
		check(store_open(&c.st, path, (size_t)64 << 30), "open store");
		for (long i = 0; i < consumers; i += LOAD_PER_TXN) {
			check(store_write_begin(c.st, &txn), "begin");
			for (long q = i; q < consumers && q < i + LOAD_PER_TXN; q++) {
				bench_attributes(q, vals);
				put_attrs(&c, txn, q, vals, 0, N_ATTRS, false);
			}
			check(store_write_commit(txn), "commit");
		}
		check(store_usage(c.st, &u), "usage");
		fig[OPS][lay] = (double)u.used_bytes / (double)consumers;
		for (int op = 0; op < OPS; op++)
			fig[op][lay] = run_op(&c, (enum op)op, ids, consumers / 10 >
			    0 ? consumers / 10 : 1);
		store_close(c.st);
	}
	printf("layout bytes/consumer %.0f %.0f %.0f %.2f\n",
	    fig[OPS][PER_ATTR], fig[OPS][ONE_RECORD], fig[OPS][VALUES],
	    fig[OPS][VALUES] / fig[OPS][PER_ATTR]);
	for (int op = 0; op < OPS; op++)
		printf("layout %s %.0f %.0f %.0f %.2f\n", op_name[op],
		    fig[op][PER_ATTR], fig[op][ONE_RECORD], fig[op][VALUES],
		    fig[op][VALUES] / fig[op][PER_ATTR]);
	free(ids);
	return 0;
}
