/*
 * A consumer's on-disk records (engine/record.h), as read from the store.
 * The first byte chooses the record kind; the rest is the record:
 *   0: consumer record (record_parse_consumer), then its sealed seed opened;
 *   1: attribute record (record_open_attr, record_attr_updated);
 *   2: attribute value sealed then opened: it must come back unchanged;
 *   3: manifest, its tag made afresh with the fuzzer's index key (the
 *      fuzzer cannot guess a tag): one that opens must list entries in key
 *      order that are found by name, and seal again to the same bytes;
 *   4: manifest as it is (a wrong tag must be refused);
 *   5: values record as it is: its names parsed (each in bounds, in name
 *      order) and its seal tried (the fuzzer cannot forge one);
 *   6: values record built from the input (name length | name | value
 *      length | value ...), sealed, then opened: the same names and values
 *      come back, and another ref or generation does not open it.
 */
#include <string.h>

#include "engine/record.h"
#include "fuzz_common.h"

static uint8_t dek[CRYPTO_KEY_BYTES], index_key[CRYPTO_KEY_BYTES],
    ref[CRYPTO_REF_BYTES];

/* record.c: keyed BLAKE2b-256, personal "vaultd-manifest", over ref | body. */
static void
manifest_tag(const uint8_t *p, size_t len, uint8_t *tag)
{
	static const char personal[crypto_generichash_blake2b_PERSONALBYTES] =
	    "vaultd-manifest";
	static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES];
	crypto_generichash_blake2b_state st;

	crypto_generichash_blake2b_init_salt_personal(&st, index_key,
	    CRYPTO_KEY_BYTES, RECORD_MANIFEST_TAG, salt,
	    (const uint8_t *)personal);
	crypto_generichash_blake2b_update(&st, ref, CRYPTO_REF_BYTES);
	crypto_generichash_blake2b_update(&st, p, len);
	crypto_generichash_blake2b_final(&st, tag, RECORD_MANIFEST_TAG);
}

static void
consumer(uint8_t *p, size_t n)
{
	struct store_val v = { n, p };
	struct consumer_rec rec;
	uint8_t seed[CRYPTO_KEY_BYTES];

	if (record_parse_consumer(&v, &rec) != 0)
		return;
	FUZZ_CHECK(n == RECORD_CONSUMER_BYTES);
	FUZZ_CHECK(rec.format >= RECORD_FORMAT &&
	    rec.format <= RECORD_CONSUMER_BOUND && rec.hdr == p);
	FUZZ_CHECK(rec.one_record == (rec.format >= RECORD_CONSUMER_VALUES));
	FUZZ_CHECK(rec.sealed_seed + RECORD_SEALED_KEY_BYTES <= p + n);
	(void)record_open_seed(dek, ref, &rec, seed);
}

static void
attr(uint8_t *p, size_t n)
{
	struct store_val v = { n, p };
	uint8_t out[SCHEMA_VALUE_MAX + 1];
	size_t len;
	uint64_t updated;

	(void)record_attr_updated(&v);
	if (record_open_attr(dek, ref, "email", 1, &v, out, sizeof(out), &len,
	    &updated) == 0)
		FUZZ_CHECK(len < sizeof(out) && out[len] == '\0');
}

static void
attr_round_trip(const uint8_t *p, size_t n)
{
	uint8_t rec[RECORD_ATTR_MAX], out[SCHEMA_VALUE_MAX + 1];
	struct store_val v;
	size_t len, rlen;
	uint64_t updated;
	char *value;

	if (n > SCHEMA_VALUE_MAX)
		return;
	value = fuzz_strndup(p, n);
	FUZZ_CHECK(record_seal_attr(dek, ref, "email", 3, value, n, 1234, rec,
	    &rlen) == 0);
	FUZZ_CHECK(rlen <= RECORD_ATTR_MAX);
	v = (struct store_val){ rlen, rec };
	FUZZ_CHECK(record_attr_updated(&v) == 1234);
	FUZZ_CHECK(record_open_attr(dek, ref, "email", 3, &v, out, sizeof(out),
	    &len, &updated) == 0);
	FUZZ_CHECK(len == n && memcmp(out, value, n) == 0 && updated == 1234);
	/* Another name or generation must not open it. */
	FUZZ_CHECK(record_open_attr(dek, ref, "phone", 3, &v, out, sizeof(out),
	    &len, NULL) != 0);
	FUZZ_CHECK(record_open_attr(dek, ref, "email", 4, &v, out, sizeof(out),
	    &len, NULL) != 0);
	free(value);
}

static void
manifest(uint8_t *p, size_t n, bool retag)
{
	static struct manifest_entry e[RECORD_MANIFEST_ENTRIES];
	static uint8_t again[RECORD_MANIFEST_MAX];
	struct store_val v = { n, p };
	struct manifest m;
	uint8_t tag[RECORD_MANIFEST_TAG];
	bool tag_ok = false;
	size_t count;
	uint64_t updated;

	if (n >= RECORD_MANIFEST_TAG) {
		manifest_tag(p, n - RECORD_MANIFEST_TAG, tag);
		if (retag)
			memcpy(p + n - RECORD_MANIFEST_TAG, tag, sizeof(tag));
		tag_ok = memcmp(p + n - RECORD_MANIFEST_TAG, tag, sizeof(tag)) == 0;
	}
	if (record_manifest_open(index_key, ref, &v, &m) != 0)
		return;
	FUZZ_CHECK(tag_ok);
	if (record_manifest_entries(&m, e, RECORD_MANIFEST_ENTRIES, &count) != 0)
		return;
	for (size_t i = 0; i < count; i++) {
		FUZZ_CHECK(e[i].len > 0 && e[i].len < SCHEMA_NAME_MAX);
		FUZZ_CHECK(record_manifest_find(&m, (const char *)e[i].name,
		    e[i].len, &updated) == 0 && updated == e[i].updated);
	}
	FUZZ_CHECK(record_manifest_seal(index_key, ref, e, count, again) == n);
	FUZZ_CHECK(memcmp(again, p, n) == 0);
}

static void
values(uint8_t *p, size_t n)
{
	static struct value_list l;
	static uint8_t plain[RECORD_VALUES_MAX];
	struct store_val v = { n, p }, sealed;

	if (record_values_names(&v, &l, &sealed) != 0)
		return;
	FUZZ_CHECK(sealed.len >= CRYPTO_OVERHEAD && sealed.len <= n);
	for (size_t i = 0; i < l.n; i++) {
		FUZZ_CHECK(l.e[i].name >= p && l.e[i].name + l.e[i].name_len <= p + n);
		FUZZ_CHECK(l.e[i].len <= SCHEMA_VALUE_MAX);
		FUZZ_CHECK(i == 0 || record_values_find(&l, (const char *)l.e[i].name,
		    l.e[i].name_len) == (int)i);
	}
	FUZZ_CHECK(record_values_open(dek, ref, 1, &v, plain, sizeof(plain),
	    &l) != 0);
}

static void
values_round_trip(const uint8_t *p, size_t n)
{
	static struct value_list l, back;
	static uint8_t out[RECORD_VALUES_MAX], plain[RECORD_VALUES_MAX];
	size_t off = 0, len;
	struct store_val v;

	l.n = 0;
	while (off < n) {
		size_t nl = p[off], vl;

		if (nl == 0 || nl >= SCHEMA_NAME_MAX || n - off < 1 + nl + 1)
			break;
		vl = p[off + 1 + nl];
		if (n - off - 2 - nl < vl)
			break;
		if (record_values_set(&l, p + off + 1, nl, off,
		    p + off + 2 + nl, vl) != 0)
			break;
		off += 2 + nl + vl;
	}
	len = record_values_size(&l);
	FUZZ_CHECK(len <= sizeof(out));
	FUZZ_CHECK(record_values_seal(dek, ref, 3, &l, out) == 0);
	v = (struct store_val){ len, out };
	FUZZ_CHECK(record_values_open(dek, ref, 3, &v, plain, sizeof(plain),
	    &back) == 0);
	FUZZ_CHECK(back.n == l.n);
	for (size_t i = 0; i < l.n; i++) {
		FUZZ_CHECK(back.e[i].name_len == l.e[i].name_len &&
		    memcmp(back.e[i].name, l.e[i].name, l.e[i].name_len) == 0);
		FUZZ_CHECK(back.e[i].updated_ms == l.e[i].updated_ms);
		FUZZ_CHECK(back.e[i].len == l.e[i].len &&
		    memcmp(back.e[i].value, l.e[i].value, l.e[i].len) == 0 &&
		    back.e[i].value[back.e[i].len] == '\0');
	}
	FUZZ_CHECK(record_values_open(dek, ref, 4, &v, plain, sizeof(plain),
	    &back) != 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p;
	size_t n;

	fuzz_init();
	if (dek[0] == 0) {
		fuzz_key(dek, sizeof(dek), 21);
		fuzz_key(index_key, sizeof(index_key), 23);
		fuzz_key(ref, sizeof(ref), 29);
	}
	if (size < 1 || size > RECORD_ATTR_MAX + RECORD_MANIFEST_MAX)
		return 0;
	/* An exact-size copy: ASan sees any read past the record. */
	n = size - 1;
	if ((p = malloc(n ? n : 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(p, data + 1, n);
	switch (data[0] % 7) {
	case 0:
		consumer(p, n);
		break;
	case 1:
		attr(p, n);
		break;
	case 2:
		attr_round_trip(p, n);
		break;
	case 3:
		manifest(p, n, true);
		break;
	case 4:
		manifest(p, n, false);
		break;
	case 5:
		values(p, n);
		break;
	case 6:
		values_round_trip(p, n);
		break;
	}
	free(p);
	return 0;
}
