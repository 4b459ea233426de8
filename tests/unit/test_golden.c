/*
 * Golden bytes of every on-disk record layout.
 *
 * The on-disk format is a contract: a store written by one build must open
 * in the next. These tests pin the exact bytes each record kind has for
 * fixed inputs and keys, so that a refactoring (the move into folders by
 * layer, issue 13) can be shown not to change the format: they must pass
 * unchanged after it. A change that makes one fail is a format change: it
 * needs a format version bump (STORE_FORMAT_VERSION or the record's own
 * format byte) and a migration, not an edit of the expected bytes here.
 *
 * Expected bytes are hex literals; "??" (or "~N" for N bytes) marks a byte
 * that is truly random
 * (a nonce, ciphertext, a MAC over them) or a wall-clock time, which the
 * test then checks some other way (a time range; opening a sealed blob with
 * the associated data written out here in full, which pins the AD).
 * Records made only deep inside a transaction are written through the real
 * code into a fixture store and read back raw with store_get (which
 * returns the stored bytes exactly, below every record parser).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <sodium.h>

#include "audit/audit.h"
#include "engine/consent.h"
#include "engine/consumer.h"
#include "engine/dataset.h"
#include "engine/deletion.h"
#include "engine/fetch.h"
#include "audit/journal.h"
#include "engine/record.h"
#include "engine/rotation.h"
#include "testutil.h"
#include "engine/tokenize.h"
#include "store/store.h"
#include "store/writer.h"

/* 00 01 02 ... 1f, and 20 21 ... 3f: the fixed keys. */
static void
fixed_key(uint8_t *k, uint8_t first)
{
	for (int i = 0; i < CRYPTO_KEY_BYTES; i++)
		k[i] = (uint8_t)(first + i);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	fail_msg("bad hex digit '%c' in an expected literal", c);
	return -1;
}

/*
 * Compares got (n bytes) with hex, which may hold spaces, "??" for a byte
 * not compared and "~N" (then a space or the end) for N of them; the
 * lengths must agree. Prints both on a mismatch.
 */
static void
assert_golden(const uint8_t *got, size_t n, const char *hex)
{
	size_t i = 0;
	int bad = 0;

	for (const char *p = hex; *p != '\0';) {
		if (*p == ' ' || *p == '\n') {
			p++;
			continue;
		}
		if (*p == '~') {	/* ~N: N bytes not compared */
			char *end;

			i += strtoul(p + 1, &end, 10);
			p = end;
			continue;
		}
		if (p[1] == '\0')
			fail_msg("odd hex literal");
		if (i < n && !(p[0] == '?' && p[1] == '?') &&
		    got[i] != (hexval(p[0]) << 4 | hexval(p[1])))
			bad = 1;
		i++;
		p += 2;
	}
	if (bad || i != n) {
		fprintf(stderr, "expected (%zu bytes): %s\ngot      (%zu bytes): ",
		    i, hex, n);
		for (size_t j = 0; j < n; j++)
			fprintf(stderr, "%02x", got[j]);
		fprintf(stderr, "\n");
		fail_msg("bytes differ from the golden record");
	}
}

static size_t
unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	for (const char *p = hex; *p != '\0';) {
		if (*p == ' ') {
			p++;
			continue;
		}
		assert_true(n < cap);
		out[n++] = (uint8_t)(hexval(p[0]) << 4 | hexval(p[1]));
		p += 2;
	}
	return n;
}

/* The raw value of key in space sp (copied out; *len its size). */
static void
raw_get(struct test_vault *f, enum store_space sp, const void *key,
    size_t klen, uint8_t *out, size_t cap, size_t *len)
{
	struct store_txn *txn = NULL;
	struct store_val v;

	assert_int_equal(store_read_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, sp, key, klen, &v), 0);
	assert_true(v.len <= cap);
	memcpy(out, v.data, v.len);
	*len = v.len;
	store_read_end(txn);
}

static void
assert_absent(struct test_vault *f, enum store_space sp, const void *key,
    size_t klen)
{
	struct store_txn *txn = NULL;
	struct store_val v;

	assert_int_equal(store_read_begin(f->v->store, &txn), 0);
	assert_int_equal(store_get(txn, sp, key, klen, &v), VAULT_ERR_NOT_FOUND);
	store_read_end(txn);
}

/* Opens a sealed blob whose AD is written out in full as hex. */
static void
assert_opens(const uint8_t *key, const char *ad_hex, const uint8_t *blob,
    size_t blob_len, const uint8_t *plain, size_t plain_len)
{
	uint8_t ad[CRYPTO_MAX_AD], out[512];
	size_t ad_len = unhex(ad_hex, ad, sizeof(ad)), n;

	assert_int_equal(crypto_open(key, ad, ad_len, blob, blob_len, out,
	    sizeof(out), &n), 0);
	assert_int_equal(n, plain_len);
	assert_memory_equal(out, plain, n);
}

static void
assert_ms_between(const uint8_t *p, uint64_t lo, uint64_t hi)
{
	uint64_t t = store_get_u64(p);

	assert_true(t >= lo && t <= hi);
}

/* ref of "alice" under index key 00..1f */
#define REF_ALICE_FIXED \
	"2cb395a5c0917b6a53e54b4eae5b8d9cd594a02f9259e11ba7329f1476d46c84"

static void
test_consumer_ref(void **state)
{
	uint8_t key[CRYPTO_KEY_BYTES], ref[CRYPTO_REF_BYTES];

	(void)state;
	fixed_key(key, 0x00);
	crypto_consumer_ref(key, "alice", 5, ref);
	assert_golden(ref, sizeof(ref), REF_ALICE_FIXED);
}

/* A sealed blob: fmt 01 | version be32 | nonce(24) | ciphertext | tag(16). */
static void
test_sealed_blob(void **state)
{
	uint8_t key[CRYPTO_KEY_BYTES], blob[3 + CRYPTO_OVERHEAD];

	(void)state;
	fixed_key(key, 0x00);
	assert_int_equal(crypto_seal(key, 0x01020304, (const uint8_t *)"ctx", 3,
	    (const uint8_t *)"abc", 3, blob, sizeof(blob)), 0);
	assert_golden(blob, sizeof(blob),
	    "01 01020304 ~24 ~3 ~16");
	/* The AD is the caller's context, then the format byte and version. */
	{
		uint8_t ad[3 + 1 + 4] = { 'c', 't', 'x', 0x01, 0x01, 0x02, 0x03, 0x04 };
		uint8_t nonce_ct[CRYPTO_NONCE_BYTES], out[3];
		unsigned long long n;

		memcpy(nonce_ct, blob + 5, CRYPTO_NONCE_BYTES);
		assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(out, &n,
		    NULL, blob + 5 + CRYPTO_NONCE_BYTES, 3 + CRYPTO_TAG_BYTES, ad,
		    sizeof(ad), nonce_ct, key), 0);
		assert_int_equal(n, 3);
		assert_memory_equal(out, "abc", 3);
	}
}

static void
test_key_check_value(void **state)
{
	uint8_t key[CRYPTO_KEY_BYTES], kcv[CRYPTO_KCV_BYTES];

	(void)state;
	fixed_key(key, 0x00);
	crypto_key_check_value(key, kcv);
	assert_golden(kcv, sizeof(kcv), "d7230fd97a98483e216d641c4b96c794");
}

/* attrs: ref | name -> fmt(1) | updated ms(8) | expires ms(8) | sealed value */
static void
test_attr_record(void **state)
{
	uint8_t dek[CRYPTO_KEY_BYTES], ref[CRYPTO_REF_BYTES], key[RECORD_ATTR_KEY_MAX];
	uint8_t rec[RECORD_ATTR_MAX];
	size_t len, klen;

	(void)state;
	fixed_key(dek, 0x20);
	fixed_key(ref, 0x00);
	klen = record_attr_key(key, ref, "email");
	assert_golden(key, klen,
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	    "656d61696c");
	assert_int_equal(record_seal_attr(dek, ref, "email", 7, "a@b.c", 5,
	    0x0102030405060708ULL, rec, &len), 0);
	assert_golden(rec, len,
	    "01 0102030405060708 0000000000000000"
	    "01 00000007 ~24 ~5 ~16");
	/* AD: ref | name | generation be32 (crypto_open adds the blob header) */
	assert_opens(dek,
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	    "656d61696c 00000007",
	    rec + RECORD_ATTR_HDR, len - RECORD_ATTR_HDR,
	    (const uint8_t *)"a@b.c", 5);
}

/* manifests: ref -> fmt(1) | count(2) | n x (len(1) | name | ms(8)) | tag(32) */
static void
test_manifest_record(void **state)
{
	uint8_t ikey[CRYPTO_KEY_BYTES], ref[CRYPTO_REF_BYTES];
	uint8_t out[RECORD_MANIFEST_MAX];
	struct manifest_entry e[4];
	size_t n = 0, len;

	(void)state;
	fixed_key(ikey, 0x00);
	fixed_key(ref, 0x20);
	assert_int_equal(record_manifest_set(e, &n, 4, "zip", 3,
	    0x1112131415161718ULL), 0);
	assert_int_equal(record_manifest_set(e, &n, 4, "email", 5,
	    0x0102030405060708ULL), 0);
	len = record_manifest_seal(ikey, ref, e, n, out);
	assert_golden(out, len,
	    "01 0002"
	    "05 656d61696c 0102030405060708"
	    "03 7a6970 1112131415161718"
	    /* tag: keyed BLAKE2b-256, personal "vaultd-manifest", ref | body */
	    "155652f8467c9ba740af6334544fbd52be23326e514327f3f06701fad2a20da2");
}

/*
 * values: ref -> fmt(1) | count(2) | n x (len(1) | name | updated ms(8) |
 * value len(2)) | sealed(values, each NUL-terminated)
 */
static void
test_values_record(void **state)
{
	static struct value_list l, back;
	uint8_t dek[CRYPTO_KEY_BYTES], ref[CRYPTO_REF_BYTES], out[256];
	uint8_t plain[64];
	struct store_val v;
	size_t len;

	(void)state;
	assert_int_equal(crypto_init(), 0);	/* the seal's locked memory */
	fixed_key(dek, 0x00);
	fixed_key(ref, 0x20);
	assert_int_equal(record_values_set(&l, (const uint8_t *)"zip", 3,
	    0x1112131415161718ULL, (const uint8_t *)"94110", 5), 0);
	assert_int_equal(record_values_set(&l, (const uint8_t *)"email", 5,
	    0x0102030405060708ULL, (const uint8_t *)"a@b.c", 5), 0);
	len = record_values_size(&l);
	assert_true(len <= sizeof(out));
	assert_int_equal(record_values_seal(dek, ref, 7, &l, out), 0);
	assert_golden(out, len,
	    "01 0002"
	    "05 656d61696c 0102030405060708 0005"
	    "03 7a6970 1112131415161718 0005"
	    "01 00000007 ~24 ~12 ~16");
	v = (struct store_val){ len, out };
	assert_int_equal(record_values_open(dek, ref, 7, &v, plain,
	    sizeof(plain), &back), 0);
	assert_int_equal(back.n, 2);
	assert_int_equal(record_values_find(&back, "zip", 3), 1);
	assert_string_equal((const char *)back.e[1].value, "94110");
	assert_int_equal(back.e[1].len, 5);
	assert_string_equal((const char *)back.e[0].value, "a@b.c");
	/* Another ref, generation, a flipped byte, a cut record: refused. */
	ref[0] ^= 1;
	assert_int_equal(record_values_open(dek, ref, 7, &v, plain,
	    sizeof(plain), &back), VAULT_ERR_CRYPTO);
	ref[0] ^= 1;
	assert_int_equal(record_values_open(dek, ref, 8, &v, plain,
	    sizeof(plain), &back), VAULT_ERR_CRYPTO);
	for (size_t at = 0; at < len; at += 7) {
		out[at] ^= 1;
		assert_int_equal(record_values_open(dek, ref, 7, &v, plain,
		    sizeof(plain), &back), VAULT_ERR_CRYPTO);
		out[at] ^= 1;
	}
	v.len--;
	assert_int_equal(record_values_open(dek, ref, 7, &v, plain,
	    sizeof(plain), &back), VAULT_ERR_CRYPTO);
}

/* counts: attr name | 00 | BLAKE2b-128(count key, value) -> holders be64 */
static void
test_count_key(void **state)
{
	struct test_vault *f = *state;
	struct tokenizer *t = NULL;
	uint8_t root[CRYPTO_KEY_BYTES], key[TOKEN_COUNT_KEY_MAX];
	size_t len;

	fixed_key(root, 0x00);
	assert_int_equal(tokenizer_new(&t, f->v->schema, root), 0);
	len = tokenizer_count_key(t, 1, "12345", 5, key);
	assert_golden(key, len, "7a6970 00 a31eef20829b6446b773907c65dac3ed");
	tokenizer_free(t);
}

/* meta "store_format" -> STORE_FORMAT_VERSION be32 */
static void
test_meta_store_format(void **state)
{
	struct test_vault *f = *state;
	uint8_t v[64];
	size_t n;

	raw_get(f, STORE_META, "store_format", 12, v, sizeof(v), &n);
	assert_golden(v, n, "00000004");
}

/*
 * meta "kv/" version(4) -> state(1) | kcv(16) | created ms(8) | destroyed
 * ms(8); "active_version" -> be32.
 */
static void
test_key_version_record(void **state)
{
	struct test_vault *f = *state;
	uint8_t v[64], kcv[CRYPTO_KCV_BYTES];
	size_t n;
	uint64_t now = store_now_ms();

	raw_get(f, STORE_META, "active_version", 14, v, sizeof(v), &n);
	assert_golden(v, n, "00000001");
	raw_get(f, STORE_META, "kv/\0\0\0\1", 7, v, sizeof(v), &n);
	assert_golden(v, n,
	    "00 ~16 ~8 0000000000000000");
	crypto_key_check_value(keyring_master(f->v->kr, 1), kcv);
	assert_memory_equal(v + 1, kcv, sizeof(kcv));
	assert_ms_between(v + 17, now - 600000, now);
}

/* meta "vault_key/<name>" -> sealed under master v, AD "vault-key|<name>" */
static void
test_sealed_vault_keys(void **state)
{
	struct test_vault *f = *state;
	static const struct { const char *name, *ad; } keys[] = {
		{ "vault_key/index", "7661756c742d6b65797c696e646578" },
		{ "vault_key/token", "7661756c742d6b65797c746f6b656e" },
		{ "vault_key/receipt", "7661756c742d6b65797c72656365697074" },
		{ "vault_key/audit", "7661756c742d6b65797c6175646974" },
	};
	const uint8_t *want[] = {
		keyring_index_key(f->v->kr), keyring_token_root(f->v->kr),
		NULL, keyring_audit_key(f->v->kr),
	};
	uint8_t v[128];
	char ad[128];
	size_t n;

	for (size_t i = 0; i < 4; i++) {
		raw_get(f, STORE_META, keys[i].name, strlen(keys[i].name),
		    v, sizeof(v), &n);
		assert_golden(v, n, "01 00000001 ~24 ~32 ~16");
		snprintf(ad, sizeof(ad), "%s", keys[i].ad);
		if (want[i] != NULL) {
			assert_opens(keyring_master(f->v->kr, 1), ad, v, n, want[i],
			    CRYPTO_KEY_BYTES);
		} else {
			uint8_t out[CRYPTO_KEY_BYTES], adb[64];
			size_t adl = unhex(ad, adb, sizeof(adb)), m;

			assert_int_equal(crypto_open(keyring_master(f->v->kr, 1),
			    adb, adl, v, n, out, sizeof(out), &m), 0);
			assert_int_equal(m, CRYPTO_KEY_BYTES);
		}
	}
}

static void
hex_of(const uint8_t *b, size_t n, char *out)
{
	crypto_hex(b, n, out);
}

/*
 * consumers: ref -> fmt(1) | master version(4) | dek generation(4) |
 * created ms(8) | wrapped DEK | sealed seed; and the attribute record and
 * manifest that the first put writes beside it.
 */
static void
test_consumer_record(void **state)
{
	struct test_vault *f = *state;
	struct attr_in in = { 0, "a@b.c", 5 };
	uint8_t ref[CRYPTO_REF_BYTES], v[512], dek[CRYPTO_KEY_BYTES];
	uint8_t seed[CRYPTO_KEY_BYTES], key[RECORD_ATTR_KEY_MAX];
	char rhex[2 * CRYPTO_REF_BYTES + 1], ad[256];
	uint64_t before = store_now_ms(), after;
	bool created;
	size_t n, m;

	assert_int_equal(consumer_put(f->v, test_ref(f->v, "alice", ref), &in, 1, &created), 0);
	after = store_now_ms();
	hex_of(ref, sizeof(ref), rhex);

	raw_get(f, STORE_CONSUMERS, ref, sizeof(ref), v, sizeof(v), &n);
	assert_golden(v, n,
	    "04 00000001 00000001 ~8 "
	    "01 00000001 ~24 ~32 ~16 "	/* wrapped DEK */
	    "01 00000001 ~24 ~32 ~16");	/* sealed seed */
	assert_ms_between(v + 9, before, after);
	{
		uint8_t adb[128];
		char created[17];
		size_t adl;

		/* Format 3's AD of the DEK, without the header: refused. */
		snprintf(ad, sizeof(ad), "%s 64656b 00000001", rhex);
		adl = unhex(ad, adb, sizeof(adb));
		assert_int_not_equal(crypto_open(keyring_master(f->v->kr, 1), adb,
		    adl, v + RECORD_CONSUMER_HDR, RECORD_SEALED_KEY_BYTES, dek,
		    sizeof(dek), &m), 0);
		/* Format 4's: ref | "dek" | master version | the header */
		hex_of(v + RECORD_CONSUMER_CREATED, 8, created);
		snprintf(ad, sizeof(ad), "%s 64656b 00000001 04 00000001 00000001 "
		    "%s", rhex, created);
		adl = unhex(ad, adb, sizeof(adb));
		assert_int_equal(crypto_open(keyring_master(f->v->kr, 1), adb, adl,
		    v + RECORD_CONSUMER_HDR, RECORD_SEALED_KEY_BYTES, dek,
		    sizeof(dek), &m), 0);
		assert_int_equal(m, CRYPTO_KEY_BYTES);
		/* AD of the seed: ref | "seed" | generation */
		snprintf(ad, sizeof(ad), "%s 73656564 00000001", rhex);
		adl = unhex(ad, adb, sizeof(adb));
		assert_int_equal(crypto_open(dek, adb, adl, v + RECORD_CONSUMER_HDR +
		    RECORD_SEALED_KEY_BYTES, RECORD_SEALED_KEY_BYTES, seed,
		    sizeof(seed), &m), 0);
		assert_int_equal(m, CRYPTO_KEY_BYTES);
	}

	/*
	 * Its values record, under the bare ref: one entry (name, updated
	 * time, value length), then the values, each NUL-terminated, sealed
	 * under that DEK, generation 1.
	 */
	raw_get(f, STORE_ATTRS, ref, sizeof(ref), v, sizeof(v), &n);
	assert_golden(v, n,
	    "01 0001 05 656d61696c ~8 0005 "
	    "01 00000001 ~24 ~6 ~16");
	assert_ms_between(v + 9, before, after);
	/* AD: ref | "values" | generation | BLAKE2b-256(the bytes before) */
	{
		uint8_t h[32];
		char hh[65];

		crypto_generichash(h, sizeof(h), v, 19, NULL, 0);
		hex_of(h, sizeof(h), hh);
		snprintf(ad, sizeof(ad), "%s 76616c756573 00000001 %s", rhex, hh);
		assert_opens(dek, ad, v + 19, n - 19, (const uint8_t *)"a@b.c", 6);
	}
	/* No record keyed ref | name, and no manifest. */
	assert_absent(f, STORE_ATTRS, key, record_attr_key(key, ref, "email"));
	assert_absent(f, STORE_MANIFESTS, ref, sizeof(ref));
	sodium_memzero(dek, sizeof(dek));
	sodium_memzero(seed, sizeof(seed));
}

/*
 * consents: ref | purpose -> fmt(1) | granted(1) | updated ms(8) | source
 *           ref | "#flags" -> fmt(1) | flags(1) | updated ms(8) | source
 * requests: "optout:" ref hex ":" time -> fmt(1) | at ms(8) | ref(32)
 */
static void
test_consent_records(void **state)
{
	struct test_vault *f = *state;
	struct attr_in in = { 0, "a@b.c", 5 };
	struct consent_change c = { .purpose = 0, .granted = false,
	    .source = "gpc" };
	uint8_t ref[CRYPTO_REF_BYTES], key[CRYPTO_REF_BYTES + 16], v[128], flags;
	uint64_t before, after;
	bool created;
	size_t n;
	char want[256], rhex[2 * CRYPTO_REF_BYTES + 1], prefix[128];
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	struct store_val k, val;

	assert_int_equal(consumer_put(f->v, test_ref(f->v, "alice", ref), &in, 1, &created), 0);
	before = store_now_ms();
	assert_int_equal(consumer_set_consent(f->v, ref, &c, &flags, &created),
	    0);
	assert_false(created);
	after = store_now_ms();
	hex_of(ref, sizeof(ref), rhex);

	memcpy(key, ref, sizeof(ref));
	memcpy(key + sizeof(ref), "service", 7);
	raw_get(f, STORE_CONSENTS, key, sizeof(ref) + 7, v, sizeof(v), &n);
	assert_golden(v, n, "01 00 ~8 677063");
	assert_ms_between(v + 2, before, after);

	memcpy(key + sizeof(ref), "#flags", 6);
	raw_get(f, STORE_CONSENTS, key, sizeof(ref) + 6, v, sizeof(v), &n);
	assert_golden(v, n, "01 01 ~8 677063");
	assert_ms_between(v + 2, before, after);

	/* The opt-out's request record (two: the flag and the purpose, one). */
	snprintf(prefix, sizeof(prefix), "optout:%s:", rhex);
	assert_int_equal(store_read_begin(f->v->store, &txn), 0);
	assert_int_equal(store_cursor_open(txn, STORE_REQUESTS, &cur), 0);
	k = (struct store_val){ .len = strlen(prefix), .data = prefix };
	assert_int_equal(store_cursor_get(cur, &k, &val, STORE_SEEK), 0);
	/* key: kind ":" ref hex ":" seconds(20 digits) nanoseconds(9 digits) */
	assert_int_equal(k.len, strlen(prefix) + 29);
	assert_memory_equal(k.data, prefix, strlen(prefix));
	for (size_t i = strlen(prefix); i < k.len; i++)
		assert_true(((const char *)k.data)[i] >= '0' &&
		    ((const char *)k.data)[i] <= '9');
	snprintf(want, sizeof(want), "01 ~8 %s", rhex);
	assert_golden(val.data, val.len, want);
	assert_ms_between((const uint8_t *)val.data + 1, before, after);
	store_cursor_close(cur);
	store_read_end(txn);
}

/*
 * meta "next_dataset" -> next number be32
 * datasets: "id:" id -> number be32 | purpose name
 *           "num:" number be32 -> purpose name | 00 | id
 */
static void
test_dataset_records(void **state)
{
	struct test_vault *f = *state;
	uint8_t v[128];
	uint32_t num;
	int bound;
	size_t n;

	assert_int_equal(dataset_get_or_create(f->v, "ds-1", 0, &num, &bound), 0);
	assert_int_equal(num, 1);
	raw_get(f, STORE_META, "next_dataset", 12, v, sizeof(v), &n);
	assert_golden(v, n, "00000002");
	raw_get(f, STORE_DATASETS, "id:ds-1", 7, v, sizeof(v), &n);
	assert_golden(v, n, "00000001 73657276696365");
	raw_get(f, STORE_DATASETS, "num:\0\0\0\1", 8, v, sizeof(v), &n);
	assert_golden(v, n, "73657276696365 00 64732d31");
}

struct audit_job {
	struct vault *v;
	const uint8_t *body;
	size_t len;
};

static int
audit_apply(struct store_txn *txn, void *arg)
{
	struct audit_job *job = arg;

	return audit_append_body_txn(&job->v->audit, txn, 0x0102030405060708ULL,
	    job->body, job->len, true);
}

/*
 * audit:     seq(8) -> fmt(1) | at ms(8) | prev hash(32) | hash(32) | 9 x
 *            (length(2) | field)
 * audit_ref: ref -> seq(8) (dupsort)
 * meta:      "audit_head" -> seq(8) | hash(32)
 *            "audit_checkpoint" -> fmt(1) | seq(8) | hash(32) | mac(32)
 * hash = keyed BLAKE2b-256(audit key, "vaultd audit v1" | seq | at | prev |
 * body); mac = keyed BLAKE2b-256(audit key, "vaultd audit checkpoint v1" |
 * fmt | seq | hash). The audit key is random per vault: the test
 * recomputes both from their definition here.
 */
static void
test_audit_entry(void **state)
{
	struct test_vault *f = *state;
	uint8_t ref[CRYPTO_REF_BYTES], body[AUDIT_BODY_MAX], v[1024], h[32];
	uint8_t seqb[8] = { 0, 0, 0, 0, 0, 0, 0, 1 }, prev[32] = { 0 }, at[8];
	struct audit_rec rec = { .principal = "p", .method = "m", .ref = ref,
	    .detail = "d", .purpose = "service", .outcome = "ok",
	    .names = "email" };
	struct audit_job job = { f->v, body, 0 };
	struct audit_check c;
	crypto_generichash_state st;
	const uint8_t *ak = keyring_audit_key(f->v->kr);
	size_t n;

	fixed_key(ref, 0x00);
	job.len = audit_encode(&rec, body);
	assert_golden(body, job.len,
	    "0001 70 0001 6d"
	    "0020 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	    "0001 64 0007 73657276696365 0000 0002 6f6b 0005 656d61696c 0000");
	assert_int_equal(writer_submit(f->v->wr, audit_apply, &job), 0);

	raw_get(f, STORE_AUDIT, seqb, 8, v, sizeof(v), &n);
	assert_golden(v, n,
	    "01 0102030405060708"
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "~32 "
	    "0001 70 0001 6d"
	    "0020 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	    "0001 64 0007 73657276696365 0000 0002 6f6b 0005 656d61696c 0000");
	store_put_u64(at, 0x0102030405060708ULL);
	crypto_generichash_init(&st, ak, CRYPTO_KEY_BYTES, 32);
	crypto_generichash_update(&st, (const uint8_t *)"vaultd audit v1", 15);
	crypto_generichash_update(&st, seqb, 8);
	crypto_generichash_update(&st, at, 8);
	crypto_generichash_update(&st, prev, 32);
	crypto_generichash_update(&st, body, job.len);
	crypto_generichash_final(&st, h, 32);
	assert_memory_equal(v + 41, h, 32);

	raw_get(f, STORE_META, "audit_head", 10, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001 ~32");
	assert_memory_equal(v + 8, h, 32);
	raw_get(f, STORE_AUDIT_REF, ref, sizeof(ref), v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");
	/* meta "audit_indexed" -> seq(8): entries up to it are in audit_ref */
	raw_get(f, STORE_META, "audit_indexed", 13, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000000");
	{
		bool more;

		assert_int_equal(audit_index(&f->v->audit, &more), 0);
	}
	raw_get(f, STORE_META, "audit_indexed", 13, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");

	assert_int_equal(audit_check(&f->v->audit, true, true, &c), 0);
	raw_get(f, STORE_META, "audit_checkpoint", 16, v, sizeof(v), &n);
	assert_golden(v, n, "01 0000000000000001 ~32 ~32");
	assert_memory_equal(v + 9, h, 32);
	crypto_generichash_init(&st, ak, CRYPTO_KEY_BYTES, 32);
	crypto_generichash_update(&st,
	    (const uint8_t *)"vaultd audit checkpoint v1", 26);
	crypto_generichash_update(&st, v, 41);
	crypto_generichash_final(&st, h, 32);
	assert_memory_equal(v + 41, h, 32);
}

/*
 * audit_ref: an entry of no consumer that names a dataset is filed under
 * BLAKE2b-256(index key, "\0dataset " | dataset id) -> seq(8).
 */
static void
test_audit_dataset_index(void **state)
{
	struct test_vault *f = *state;
	struct audit_rec rec = { .principal = "p", .method = "m",
	    .dataset = "ds-1", .outcome = "ok" };
	uint8_t body[AUDIT_BODY_MAX], key[CRYPTO_REF_BYTES], v[64];
	struct audit_job job = { f->v, body, 0 };
	size_t n;

	job.len = audit_encode(&rec, body);
	assert_golden(body, job.len, "0001 70 0001 6d 0000 0000 0000"
	    "0004 64732d31 0002 6f6b 0000 0000");
	assert_int_equal(writer_submit(f->v->wr, audit_apply, &job), 0);
	crypto_consumer_ref(keyring_index_key(f->v->kr), "\0dataset ds-1", 13,
	    key);
	raw_get(f, STORE_AUDIT_REF, key, sizeof(key), v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");
}

/*
 * requests: "del:" request id -> fmt(1) | at ms(8) | ref(32) |
 *           Ed25519 signature(64) | signed receipt text
 * meta:     "ledger_next" -> seq(8); "pending/" decimal version -> count(8)
 * gc:       ref -> deleted ms(8)
 */
static void
test_deletion_records(void **state)
{
	struct test_vault *f = *state;
	struct attr_in in = { 0, "a@b.c", 5 };
	struct deletion_request req = { TEST_REF(f->v, "alice"), "req-1" };
	struct receipt rc;
	uint8_t ref[CRYPTO_REF_BYTES], v[1024];
	char rhex[65], text[512], want[2048];
	uint64_t before, after;
	bool created;
	size_t n, bad, tl;

	memset(&rc, 0, sizeof(rc));
	assert_int_equal(consumer_put(f->v, test_ref(f->v, "alice", ref), &in, 1, &created), 0);
	before = store_now_ms();
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	after = store_now_ms();
	hex_of(ref, sizeof(ref), rhex);

	raw_get(f, STORE_REQUESTS, "del:req-1", 9, v, sizeof(v), &n);
	tl = (size_t)snprintf(text, sizeof(text),
	    "vaultd deletion receipt v1\nrequest_id: req-1\nconsumer_ref: %s\n"
	    "found: true\ndeleted_at_ms: %llu\nepoch: 1\ndatasets: \n"
	    "audit_head: %s\n", rhex, (unsigned long long)store_get_u64(v + 1),
	    rc.audit_head);
	snprintf(want, sizeof(want), "01 ~8 %s ~64 ", rhex);
	for (size_t i = 0; i < tl; i++)
		snprintf(want + strlen(want), 3, "%02x", (uint8_t)text[i]);
	assert_golden(v, n, want);
	assert_ms_between(v + 1, before, after);
	assert_int_equal(crypto_sign_verify_detached(v + 41, v + 105, tl,
	    keyring_receipt_public_key(f->v->kr)), 0);

	raw_get(f, STORE_META, "ledger_next", 11, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");
	raw_get(f, STORE_META, "pending/1", 9, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");
	raw_get(f, STORE_GC, ref, sizeof(ref), v, sizeof(v), &n);
	assert_golden(v, n, "~8");
	assert_ms_between(v, before, after);
	receipt_clear(&rc);
}

/*
 * audit-journal.0 / .1 (files in the store directory), one record per
 * entry: fmt(1) | body length(2) | journal seq(8) | at ms(8) | body |
 * mac(32), mac = keyed BLAKE2b-256(audit key, "vaultd audit journal v1" |
 * the bytes before it); meta "audit_journal_seq" -> the last seq moved in.
 */
static void
test_journal_record(void **state)
{
	struct test_vault *f = *state;
	struct audit_rec rec = { .principal = "p", .method = "m",
	    .outcome = "ok" };
	uint8_t v[512], mac[32];
	char path[4200];
	crypto_generichash_state st;
	uint64_t before = store_now_ms(), after;
	FILE *fp;
	size_t n;

	assert_int_equal(journal_open(&f->v->audit.jn, &f->v->audit, f->cfg->store_dir,
	    3600000, 3600000), 0);
	assert_int_equal(journal_append(f->v->audit.jn, &rec, 1), 0);
	after = store_now_ms();
	snprintf(path, sizeof(path), "%s/audit-journal.0", f->cfg->store_dir);
	assert_non_null(fp = fopen(path, "rb"));
	n = fread(v, 1, sizeof(v), fp);
	fclose(fp);
	assert_golden(v, n,
	    "01 0016 0000000000000001 ~8 "
	    "0001 70 0001 6d 0000 0000 0000 0000 0002 6f6b 0000 0000"
	    "~32");
	assert_ms_between(v + 11, before, after);
	crypto_generichash_init(&st, keyring_audit_key(f->v->kr), CRYPTO_KEY_BYTES,
	    32);
	crypto_generichash_update(&st, (const uint8_t *)"vaultd audit journal v1",
	    23);
	crypto_generichash_update(&st, v, n - 32);
	crypto_generichash_final(&st, mac, 32);
	assert_memory_equal(v + n - 32, mac, 32);

	assert_int_equal(journal_sync(f->v->audit.jn), 0);
	raw_get(f, STORE_META, "audit_journal_seq", 17, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");
	journal_close(f->v->audit.jn);
	f->v->audit.jn = NULL;
}

static int
expire_apply(struct store_txn *txn, void *arg)
{
	size_t n;

	(void)arg;
	return ledger_expire_txn(txn, LEDGER_DELETION, UINT64_MAX, 10, &n);
}

/*
 * lineage_rows: dataset be32 | the consumer's stream position for the
 * dataset's purpose be64 | lineage tag be64 -> "", written before a page
 * of features leaves; ledger: seq(8) -> fmt(1) | deleted ms(8) |
 * dataset(4) | pseudonym(16), one per dataset that received a deleted
 * consumer. The deletion takes the consumer's rows away.
 */
static void
test_lineage_and_ledger_event(void **state)
{
	struct test_vault *f = *state;
	struct attr_in in = { 0, "a@b.c", 5 };
	struct deletion_request req = { TEST_REF(f->v, "alice"), "req-1" };
	int attrs[1] = { 0 };
	struct fetch_query q = { .purpose = 0, .attrs = attrs, .n_attrs = 1 };
	struct fetch_set set;
	struct receipt rc;
	uint8_t ref[CRYPTO_REF_BYTES], v[256], seq1[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	uint8_t lkey[20];
	uint64_t before, after;
	uint32_t num;
	int bound;
	bool created;
	size_t n, bad;

	memset(&set, 0, sizeof(set));
	memset(&rc, 0, sizeof(rc));
	q.today_days = fetch_today();
	assert_int_equal(consumer_put(f->v, test_ref(f->v, "alice", ref), &in, 1, &created), 0);
	assert_int_equal(dataset_get_or_create(f->v, "ds-1", 0, &num, &bound), 0);
	assert_int_equal(fetch_snapshot(f->v, &q, &set), 0);
	assert_int_equal(set.n, 1);
	assert_int_equal(fetch_record_lineage(f->v, num, &set, 0, 1), 0);
	assert_int_equal(num, 1);
	store_put_u32(lkey, num);
	store_put_u64(lkey + 4, tokenizer_order(f->v->tok, 0, ref));
	store_put_u64(lkey + 12, tokenizer_lineage_tag(f->v->tok, num, ref));
	raw_get(f, STORE_LINEAGE_ROWS, lkey, sizeof(lkey), v, sizeof(v), &n);
	assert_int_equal(n, 0);

	/*
	 * consent_ledger: the same record, one per dataset that received the
	 * consumer for a purpose it may no longer be used for; saying the
	 * same again, or granting, adds none.
	 */
	{
		struct consent_change c = { .purpose = 0, .granted = false,
		    .source = "user" };
		uint8_t seq2[8] = { 0, 0, 0, 0, 0, 0, 0, 2 }, flags;

		before = store_now_ms();
		assert_int_equal(consumer_set_consent(f->v, ref, &c, &flags,
		    &created), 0);
		after = store_now_ms();
		raw_get(f, STORE_CONSENT_LEDGER, seq1, 8, v, sizeof(v), &n);
		assert_golden(v, n, "01 ~8 00000001 ~16");
		assert_ms_between(v + 1, before, after);
		assert_memory_equal(v + 13, set.rows[0].pseudonym,
		    TOKEN_PSEUDONYM_BYTES);
		raw_get(f, STORE_META, "consent_ledger_next", 19, v, sizeof(v),
		    &n);
		assert_golden(v, n, "0000000000000002");
		assert_int_equal(consumer_set_consent(f->v, ref, &c, &flags,
		    &created), 0);
		c.granted = true;
		assert_int_equal(consumer_set_consent(f->v, ref, &c, &flags,
		    &created), 0);
		assert_absent(f, STORE_CONSENT_LEDGER, seq2, 8);
	}

	before = store_now_ms();
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	after = store_now_ms();
	raw_get(f, STORE_LEDGER, seq1, 8, v, sizeof(v), &n);
	assert_golden(v, n, "01 ~8 00000001 ~16");
	assert_ms_between(v + 1, before, after);
	assert_memory_equal(v + 13, set.rows[0].pseudonym, TOKEN_PSEUDONYM_BYTES);
	assert_absent(f, STORE_LINEAGE_ROWS, lkey, sizeof(lkey));
	raw_get(f, STORE_META, "ledger_next", 11, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000002");
	/* Retention: meta "ledger_expired" -> the last seq dropped(8). */
	assert_int_equal(writer_submit(f->v->wr, expire_apply, f->v), 0);
	raw_get(f, STORE_META, "ledger_expired", 14, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000001");
	receipt_clear(&rc);
	fetch_set_free(&set);
}

static int
legacy_apply(struct store_txn *txn, void *arg)
{
	const uint8_t *ref = arg;

	/* Lineage as stores before lineage_rows hold it: ref -> be32 numbers. */
	int r = store_put(txn, STORE_LINEAGE, ref, CRYPTO_REF_BYTES,
	    "\0\0\0\1", 4, 0);

	return r != 0 ? r : store_put(txn, STORE_LINEAGE, ref, CRYPTO_REF_BYTES,
	    "\0\0\0\2", 4, 0);
}

static int
list_dataset(const struct dataset_info *ds, void *arg)
{
	char *out = arg;

	strcat(out, ds->id);
	strcat(out, " ");
	return 0;
}

static int
no_consent(const char *name, size_t len, uint8_t state, uint64_t at_ms,
    const char *source, size_t source_len, void *arg)
{
	(void)name, (void)len, (void)state, (void)at_ms, (void)source;
	(void)source_len, (void)arg;
	return 0;
}

/*
 * A store written before lineage_rows keeps its lineage by ref: exports
 * and deletions still find it, next to the rows of datasets since, each
 * dataset once; the deletion removes both.
 */
static void
test_lineage_old_layout(void **state)
{
	struct test_vault *f = *state;
	struct attr_in in = { 0, "a@b.c", 5 };
	struct deletion_request req = { TEST_REF(f->v, "bob"), "req-1" };
	int attrs[1] = { 0 };
	struct fetch_query q = { .purpose = 0, .attrs = attrs, .n_attrs = 1 };
	struct fetch_set set;
	struct receipt rc;
	uint8_t ref[CRYPTO_REF_BYTES];
	char listed[256] = "";
	uint32_t old, num;
	uint64_t created;
	int bound;
	bool made;
	size_t bad;

	memset(&set, 0, sizeof(set));
	memset(&rc, 0, sizeof(rc));
	q.today_days = fetch_today();
	assert_int_equal(consumer_put(f->v, test_ref(f->v, "bob", ref), &in, 1,
	    &made), 0);
	assert_int_equal(dataset_get_or_create(f->v, "ds-old", 0, &old, &bound), 0);
	assert_int_equal(dataset_get_or_create(f->v, "ds-both", 0, &num, &bound), 0);
	assert_int_equal(dataset_get_or_create(f->v, "ds-none", 0, &num, &bound), 0);
	assert_int_equal(old, 1);
	assert_int_equal(writer_submit(f->v->wr, legacy_apply, ref), 0);
	/* ds-old: in the old layout; ds-both: in both; ds-none: in neither. */
	assert_int_equal(fetch_snapshot(f->v, &q, &set), 0);
	assert_int_equal(fetch_record_lineage(f->v, 2, &set, 0, 1), 0);

	assert_int_equal(consumer_export_records(f->v, ref, no_consent,
	    list_dataset, listed, &created), 0);
	assert_string_equal(listed, "ds-old ds-both ");
	assert_int_equal(deletion_run(f->v, &req, 1, &rc, &bad), 0);
	/* A receipt names its datasets in byte order. */
	assert_int_equal(rc.n_datasets, 2);
	assert_string_equal(rc.datasets[0], "ds-both");
	assert_string_equal(rc.datasets[1], "ds-old");
	assert_absent(f, STORE_LINEAGE, ref, sizeof(ref));
	receipt_clear(&rc);
	fetch_set_free(&set);
}

/*
 * Lineage goes on record ahead of the pages sent, as many rows as have
 * left (at least the page): pages of 2 over 20 rows record [0, 2), [2, 4),
 * [4, 8), [8, 16), [16, 20), so what a stream stopped early leaves on
 * record is never more than twice what it sent.
 */
static void
test_lineage_ahead_of_pages(void **state)
{
	static const size_t want[10] = { 2, 4, 8, 8, 16, 16, 16, 16, 20, 20 };
	struct test_vault *f = *state;
	int attrs[1] = { 0 };
	struct fetch_query q = { .purpose = 0, .attrs = attrs, .n_attrs = 1 };
	struct fetch_set set;
	uint8_t ref[CRYPTO_REF_BYTES];
	uint32_t num;
	int bound;
	bool created;

	memset(&set, 0, sizeof(set));
	q.today_days = fetch_today();
	for (int i = 0; i < 20; i++) {
		char id[16];
		struct attr_in in = { 0, "a@b.c", 5 };

		snprintf(id, sizeof(id), "c%d", i);
		assert_int_equal(consumer_put(f->v, test_ref(f->v, id, ref), &in, 1,
		    &created), 0);
	}
	assert_int_equal(dataset_get_or_create(f->v, "ds-ahead", 0, &num,
	    &bound), 0);
	assert_int_equal(fetch_snapshot(f->v, &q, &set), 0);
	assert_int_equal(set.n, 20);
	for (size_t p = 0; p < 10; p++) {
		assert_int_equal(fetch_page(f->v, &q, num, &set, 2 * p, 2), 0);
		assert_int_equal(set.lineage_to, want[p]);
	}
	fetch_set_free(&set);
}

static int
rotation_cb_ok(const struct rotation_progress *p, void *arg)
{
	(void)p;
	(void)arg;
	return 0;
}

/*
 * meta "rotation" -> target version(4) | has cursor(1) | cursor ref(32) |
 * rewrapped(8) | total(8), while a rotation runs; afterwards the consumer
 * record names the new master version and its DEK is wrapped under it.
 */
static void
test_rotation_state(void **state)
{
	struct test_vault *f = *state;
	struct attr_in in = { 0, "a@b.c", 5 };
	struct rotation_progress p;
	uint8_t ref[CRYPTO_REF_BYTES], v[256], dek[CRYPTO_KEY_BYTES], adb[96];
	char why[256], rhex[65], ad[200];
	uint8_t created_ms[8];
	uint64_t destroyed;
	bool created;
	size_t n, m, adl;

	assert_int_equal(consumer_put(f->v, test_ref(f->v, "alice", ref), &in, 1, &created), 0);
	assert_int_equal(rotation_start(f->v, 0, &p, why, sizeof(why)), 0);
	raw_get(f, STORE_META, "rotation", 8, v, sizeof(v), &n);
	assert_golden(v, n, "00000002 00"
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "~8 0000000000000001");
	/* rewrapped: how far the driver got (it may have started). */
	assert_true(store_get_u64(v + 37) <= 1);
	raw_get(f, STORE_META, "kv/\0\0\0\2", 7, v, sizeof(v), &n);
	assert_golden(v, n, "00 ~16 ~8 0000000000000000");
	assert_int_equal(rotation_run(f->v, rotation_cb_ok, NULL), 0);

	raw_get(f, STORE_META, "active_version", 14, v, sizeof(v), &n);
	assert_golden(v, n, "00000002");
	raw_get(f, STORE_CONSUMERS, ref, sizeof(ref), v, sizeof(v), &n);
	assert_golden(v, n, "04 00000002 00000001 ~8 "
	    "01 00000002 ~24 ~32 ~16 "
	    "01 00000001 ~24 ~32 ~16");
	hex_of(ref, sizeof(ref), rhex);
	{
		char cr[17];

		hex_of(v + RECORD_CONSUMER_CREATED, 8, cr);
		snprintf(ad, sizeof(ad), "%s 64656b 00000002 04 00000002 "
		    "00000001 %s", rhex, cr);
	}
	adl = unhex(ad, adb, sizeof(adb));
	assert_int_equal(crypto_open(keyring_master(f->v->kr, 2), adb, adl,
	    v + RECORD_CONSUMER_HDR, RECORD_SEALED_KEY_BYTES, dek, sizeof(dek),
	    &m), 0);
	sodium_memzero(dek, sizeof(dek));

	/* A destroyed version keeps its created time; its check value is gone. */
	raw_get(f, STORE_META, "kv/\0\0\0\1", 7, v, sizeof(v), &n);
	memcpy(created_ms, v + 17, 8);
	assert_int_equal(rotation_destroy(f->v, 1, &destroyed, why,
	    sizeof(why)), 0);
	raw_get(f, STORE_META, "kv/\0\0\0\1", 7, v, sizeof(v), &n);
	assert_golden(v, n, "01 00000000000000000000000000000000 ~8 ~8");
	assert_memory_equal(v + 17, created_ms, 8);
	assert_int_equal(store_get_u64(v + 25), destroyed);
}

/* counts: attribute name | 00 | hash of the value -> live holders be64 */
static void
test_count_record(void **state)
{
	struct test_vault f = { 0 };
	struct attr_in in = { 0, "mobile", 6 };
	uint8_t ref[CRYPTO_REF_BYTES], key[TOKEN_COUNT_KEY_MAX], v[64];
	char path[4200], err[512];
	bool created;
	size_t n, klen;

	(void)state;
	f.dir = test_tmpdir();
	f.cfg = test_config(f.dir);	/* makes db/ and keys/ */
	config_free(f.cfg);
	snprintf(path, sizeof(path), "%s/vaultd.conf", f.dir);
	test_write_file(path,
	    "map_size_mb = 64;\n"
	    "schema = ( { name = \"device\"; type = \"category\";"
	    " values = [\"mobile\", \"desktop\"]; } );\n"
	    "purposes = ( { name = \"service\"; basis = \"opt_out\"; } );\n");
	if (config_load(&f.cfg, path, err, sizeof(err)) != 0)
		fail_msg("config: %s", err);
	assert_int_equal(vault_open(&f.v, f.cfg, VAULT_OPEN_CREATE), 0);
	assert_int_equal(consumer_put(f.v, test_ref(f.v, "alice", ref), &in, 1, &created), 0);
	assert_int_equal(consumer_put(f.v, test_ref(f.v, "bob", ref), &in, 1, &created), 0);
	klen = tokenizer_count_key(f.v->tok, 0, "mobile", 6, key);
	assert_golden(key, klen, "646576696365 00 ~16");
	raw_get(&f, STORE_COUNTS, key, klen, v, sizeof(v), &n);
	assert_golden(v, n, "0000000000000002");
	vault_close(f.v);
	config_free(f.cfg);
	test_rmtree(f.dir);
	free(f.dir);
}

/* A consumer record of format 1 (before manifests) still parses as one. */
static void
test_consumer_record_v1(void **state)
{
	uint8_t b[RECORD_CONSUMER_BYTES];
	struct consumer_rec rec;
	struct store_val v = { .len = sizeof(b), .data = b };

	(void)state;
	memset(b, 0xaa, sizeof(b));
	memcpy(b, "\x01\x00\x00\x00\x03\x00\x00\x00\x05"
	    "\x01\x02\x03\x04\x05\x06\x07\x08", RECORD_CONSUMER_HDR);
	assert_int_equal(record_parse_consumer(&v, &rec), 0);
	assert_false(rec.has_manifest);
	assert_int_equal(rec.master_version, 3);
	assert_int_equal(rec.dek_generation, 5);
	assert_int_equal(rec.created_ms, 0x0102030405060708ULL);
	assert_ptr_equal(rec.wrapped_dek, b + 17);
	assert_ptr_equal(rec.sealed_seed, b + 17 + 77);
	b[0] = 0x03;	/* one values record */
	assert_int_equal(record_parse_consumer(&v, &rec), 0);
	assert_true(rec.one_record);
	assert_false(rec.has_manifest);
	b[0] = 0x04;	/* and its header bound to the DEK */
	assert_int_equal(record_parse_consumer(&v, &rec), 0);
	assert_true(rec.one_record);
	assert_int_equal(rec.format, 4);
	assert_ptr_equal(rec.hdr, b);
	b[0] = 0x05;
	assert_int_equal(record_parse_consumer(&v, &rec), VAULT_ERR_CRYPTO);
	b[0] = 0x00;
	assert_int_equal(record_parse_consumer(&v, &rec), VAULT_ERR_CRYPTO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consumer_ref),
		cmocka_unit_test(test_sealed_blob),
		cmocka_unit_test(test_key_check_value),
		cmocka_unit_test(test_attr_record),
		cmocka_unit_test(test_manifest_record),
		cmocka_unit_test(test_values_record),
		cmocka_unit_test(test_consumer_record_v1),
		cmocka_unit_test_setup_teardown(test_count_key, test_vault_setup, test_vault_teardown),
		cmocka_unit_test(test_count_record),
		cmocka_unit_test_setup_teardown(test_meta_store_format, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_key_version_record, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_sealed_vault_keys, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_consumer_record, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_consent_records, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_dataset_records, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_audit_entry, test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_audit_dataset_index, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_journal_record, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_lineage_and_ledger_event,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_lineage_old_layout,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_lineage_ahead_of_pages,
		    test_vault_setup, test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_rotation_state, test_vault_setup,
		    test_vault_teardown),
		cmocka_unit_test_setup_teardown(test_deletion_records, test_vault_setup,
		    test_vault_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
