#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "audit/audit.h"
#include "audit/audit_text.h"
#include "store/meta.h"
#include "util/log.h"
#include "util/utf8.h"

#define REC_FORMAT 1
#define INDEX_BATCH 5000
/*
 * A scan by consumer reads at most this many entries past the index, or
 * catches the index up first. On LMDB indexing is an in-process tree
 * insert per entry, cheaper than each export walking the tail (1,600
 * entries on average under 32 exporting clients at 4096). On PostgreSQL
 * indexing costs round trips per entry while the walk fetches 256 rows a
 * query: a lower bound there would send more exports into the slow path.
 */
#define TAIL_MAX_IN_PROCESS 512
#define TAIL_MAX_REMOTE 4096
#define DOMAIN "vaultd audit v1"
/* An entry: fmt(1) | at ms(8) | prev hash(32) | hash(32) | body. */
#define REC_AT 1			/* offsets of its fields */
#define REC_PREV 9
#define REC_HASH (REC_PREV + AUDIT_HASH_BYTES)
#define HDR (REC_HASH + AUDIT_HASH_BYTES)
#define MAX_FIELD AUDIT_TEXT_MAX
#define N_FIELDS AUDIT_N_FIELDS
/* Entries from before names and source had fields end after outcome. */
#define N_FIELDS_V1 7
#define PAGE 512
#define CP_FORMAT 1
#define CP_DOMAIN "vaultd audit checkpoint v1"
/* The checkpoint: fmt(1) | seq(8) | hash(32) | mac(32). */
#define CP_SEQ 1
#define CP_HASH 9
#define CP_SIGNED (CP_HASH + AUDIT_HASH_BYTES)	/* what the MAC covers */
#define CP_BYTES (CP_SIGNED + AUDIT_HASH_BYTES)
/* The head (meta "audit_head"): seq(8) | hash(32). */
#define HEAD_SEQ 0
#define HEAD_HASH 8
#define HEAD_BYTES (HEAD_HASH + AUDIT_HASH_BYTES)
/* The consumer index key of a dataset: no consumer id starts with NUL. */
#define DATASET_DOMAIN "\0dataset "

_Static_assert(AUDIT_BODY_MAX == N_FIELDS * (2 + MAX_FIELD), "body size");

/* Field numbers, in record order. */
enum { F_PRINCIPAL, F_METHOD, F_REF, F_DETAIL, F_PURPOSE, F_DATASET, F_OUTCOME,
	F_NAMES, F_SOURCE };


/* hash over domain | seq | at | prev | encoded fields (body). */
static void
chain_hash(const uint8_t *key, uint64_t seq, const uint8_t *at_prev,
    const uint8_t *body, size_t body_len, uint8_t out[AUDIT_HASH_BYTES])
{
	crypto_generichash_state st;
	uint8_t s[8];

	store_put_u64(s, seq);
	crypto_generichash_init(&st, key, CRYPTO_KEY_BYTES, AUDIT_HASH_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)DOMAIN, sizeof(DOMAIN) - 1);
	crypto_generichash_update(&st, s, sizeof(s));
	crypto_generichash_update(&st, at_prev, 8 + AUDIT_HASH_BYTES);
	crypto_generichash_update(&st, body, body_len);
	crypto_generichash_final(&st, out, AUDIT_HASH_BYTES);
}

int
audit_head(struct store_txn *txn, uint64_t *seq,
    uint8_t hash[AUDIT_HASH_BYTES])
{
	struct store_val val;
	int rc = meta_get(txn, META_AUDIT_HEAD, 0, &val);

	*seq = 0;
	memset(hash, 0, AUDIT_HASH_BYTES);
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (val.len != HEAD_BYTES)
		return VAULT_ERR_STATE;
	*seq = store_get_u64((const uint8_t *)val.data + HEAD_SEQ);
	memcpy(hash, (const uint8_t *)val.data + HEAD_HASH, AUDIT_HASH_BYTES);
	return 0;
}

size_t
audit_encode(const struct audit_rec *rec, uint8_t buf[AUDIT_BODY_MAX])
{
	const char *text[N_FIELDS] = { rec->principal, rec->method, NULL,
	    rec->detail, rec->purpose, rec->dataset, rec->outcome, rec->names,
	    rec->source };
	size_t off = 0;

	for (int i = 0; i < N_FIELDS; i++) {
		const char *t = text[i] != NULL ? text[i] : "";
		size_t n;

		if (i == F_REF) {
			n = rec->ref != NULL ? CRYPTO_REF_BYTES : 0;
			if (n > 0)
				memcpy(buf + off + 2, rec->ref, n);
		} else {
			n = audit_text_store((const uint8_t *)t, strlen(t), buf + off + 2);
		}
		buf[off] = (uint8_t)(n >> 8);
		buf[off + 1] = (uint8_t)n;
		off += 2 + n;
	}
	return off;
}

/* An entry body split into its fields (body_fields). */
struct body {
	const uint8_t *f[N_FIELDS];
	size_t n[N_FIELDS];
	int count;		/* fields present: N_FIELDS_V1 or N_FIELDS */
};

/*
 * The one walker of entry bodies: splits len bytes at body into their
 * fields (N_FIELDS_V1 or N_FIELDS of them; the fields an older entry lacks
 * come out empty). VAULT_ERR_STATE when it is malformed.
 */
static int
body_fields(const uint8_t *body, size_t len, struct body *b)
{
	size_t off = 0;
	int i;

	for (i = 0; i < N_FIELDS && off < len; i++) {
		if (len - off < 2)
			return VAULT_ERR_STATE;
		b->n[i] = (size_t)body[off] << 8 | body[off + 1];
		off += 2;
		if (len - off < b->n[i] || b->n[i] > MAX_FIELD)
			return VAULT_ERR_STATE;
		b->f[i] = body + off;
		off += b->n[i];
	}
	if (off != len || (i != N_FIELDS_V1 && i != N_FIELDS) ||
	    (b->n[F_REF] != 0 && b->n[F_REF] != CRYPTO_REF_BYTES))
		return VAULT_ERR_STATE;
	b->count = i;
	for (; i < N_FIELDS; i++) {
		b->f[i] = body + off;
		b->n[i] = 0;
	}
	return 0;
}

/*
 * The body b again at out, as many fields as it has, with every text field
 * in its stored form: fields already in it are kept as they are. Returns
 * its length.
 */
static size_t
body_store(const struct body *b, uint8_t out[AUDIT_BODY_MAX])
{
	size_t off = 0;

	for (int i = 0; i < b->count; i++) {
		size_t m = b->n[i];

		if (i == F_REF || audit_text_ok(b->f[i], b->n[i])) {
			if (m > 0)
				memcpy(out + off + 2, b->f[i], m);
		} else {
			m = audit_text_store(b->f[i], b->n[i], out + off + 2);
		}
		out[off] = (uint8_t)(m >> 8);
		out[off + 1] = (uint8_t)m;
		off += 2 + m;
	}
	return off;
}

int
audit_check_body(const uint8_t *body, size_t len)
{
	struct body b;

	return body_fields(body, len, &b);
}

void
audit_dataset_key(const struct audit_log *al, const char *dataset, size_t len,
    uint8_t key[CRYPTO_REF_BYTES])
{
	char buf[sizeof(DATASET_DOMAIN) - 1 + MAX_FIELD];

	if (len > MAX_FIELD)
		len = MAX_FIELD;
	memcpy(buf, DATASET_DOMAIN, sizeof(DATASET_DOMAIN) - 1);
	memcpy(buf + sizeof(DATASET_DOMAIN) - 1, dataset, len);
	crypto_consumer_ref(keyring_index_key(al->kr), buf,
	    sizeof(DATASET_DOMAIN) - 1 + len, key);
}

/*
 * Where the consumer index files a body: under its consumer ref, or for an
 * entry of no consumer that names a dataset, under the dataset's key.
 * VAULT_ERR_NOT_FOUND when nowhere.
 */
static int
index_key_of(const struct audit_log *al, const struct body *b,
    uint8_t key[CRYPTO_REF_BYTES])
{
	if (b->n[F_REF] != 0)
		memcpy(key, b->f[F_REF], CRYPTO_REF_BYTES);
	else if (b->n[F_DATASET] != 0)
		audit_dataset_key(al, (const char *)b->f[F_DATASET],
		    b->n[F_DATASET], key);
	else
		return VAULT_ERR_NOT_FOUND;
	return 0;
}

/* index_key_of a body of len bytes; VAULT_ERR_STATE when it is malformed. */
static int
body_index_key(const struct audit_log *al, const uint8_t *body, size_t len,
    uint8_t key[CRYPTO_REF_BYTES])
{
	struct body b;

	if (body_fields(body, len, &b) != 0)
		return VAULT_ERR_STATE;
	return index_key_of(al, &b, key);
}

/*
 * Adds entry seq of ref to the consumer index, if it is not there yet (the
 * store leaves a pair already there as it is, without a page copy).
 */
static int
index_put(struct store_txn *txn, const uint8_t *ref, uint64_t seq)
{
	uint8_t sk[8];

	store_put_u64(sk, seq);
	return store_put(txn, STORE_AUDIT_REF, ref, CRYPTO_REF_BYTES, sk,
	    sizeof(sk), 0);
}

int
audit_batch_begin(struct store_txn *txn, struct audit_batch *b)
{
	return audit_head(txn, &b->seq, b->hash);
}

int
audit_batch_add(struct audit_log *al, struct store_txn *txn,
    struct audit_batch *b, uint64_t at_ms, const uint8_t *body, size_t len,
    bool index)
{
	uint8_t buf[HDR + AUDIT_BODY_MAX], key[8];
	uint8_t ref[CRYPTO_REF_BYTES];
	struct body f;
	uint64_t seq = b->seq + 1;
	struct store_val k, val;
	int rc, r, filed;

	if (len > AUDIT_BODY_MAX || body_fields(body, len, &f) != 0)
		return VAULT_ERR_STATE;
	filed = index_key_of(al, &f, ref);
	buf[0] = REC_FORMAT;
	store_put_u64(buf + REC_AT, at_ms);
	memcpy(buf + REC_PREV, b->hash, AUDIT_HASH_BYTES);
	len = body_store(&f, buf + HDR);
	chain_hash(keyring_audit_key(al->kr), seq, buf + REC_AT, buf + HDR, len,
	    buf + REC_HASH);
	store_put_u64(key, seq);
	k = (struct store_val){ 8, key };
	val = (struct store_val){ HDR + len, buf };
	if ((rc = store_put(txn, STORE_AUDIT, k.data, k.len, val.data, val.len,
	    STORE_APPEND)) != 0)
		return rc;
	/* Unless index, the consumer index gets it later (audit_index). */
	if (index && filed == 0 && (r = index_put(txn, ref, seq)) != 0)
		return r;
	b->seq = seq;
	memcpy(b->hash, buf + REC_HASH, AUDIT_HASH_BYTES);
	return 0;
}

int
audit_batch_end(struct store_txn *txn, const struct audit_batch *b)
{
	uint8_t head[HEAD_BYTES];

	store_put_u64(head + HEAD_SEQ, b->seq);
	memcpy(head + HEAD_HASH, b->hash, AUDIT_HASH_BYTES);
	return meta_put(txn, META_AUDIT_HEAD, 0, head, sizeof(head));
}

int
audit_append_body_txn(struct audit_log *al, struct store_txn *txn,
    uint64_t at_ms, const uint8_t *body, size_t len, bool index)
{
	struct audit_batch b;
	int r;

	if ((r = audit_batch_begin(txn, &b)) != 0 ||
	    (r = audit_batch_add(al, txn, &b, at_ms, body, len, index)) != 0)
		return r;
	return audit_batch_end(txn, &b);
}

int
audit_append_txn(struct audit_log *al, struct store_txn *txn,
    const struct audit_rec *rec)
{
	uint8_t body[AUDIT_BODY_MAX];
	size_t len = audit_encode(rec, body);

	/* A write's entry is indexed in its transaction: its pages are copied anyway. */
	return audit_append_body_txn(al, txn, store_now_ms(), body, len, true);
}

/* ------------------------------------------------ the consumer index */

/* Entries up to *seq are in the index (0: none). */
static int
get_indexed(struct store_txn *txn, uint64_t *seq)
{
	return meta_get_u64_or0(txn, META_AUDIT_INDEXED, 0, seq);
}

static int
put_indexed(struct store_txn *txn, uint64_t seq)
{
	return meta_put_u64(txn, META_AUDIT_INDEXED, 0, seq);
}

struct index_job {
	struct audit_log *al;
	bool more;			/* out: entries remain after this batch */
};

/* Indexes up to INDEX_BATCH entries after the recorded position. */
static int
index_apply(struct store_txn *txn, void *arg)
{
	struct index_job *job = arg;
	struct audit_log *al = job->al;
	struct store_cursor *cur = NULL;
	uint64_t done, seq = 0;
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	size_t n = 0;
	int rc, r;

	job->more = false;
	if ((r = get_indexed(txn, &done)) != 0)
		return r;
	if ((rc = store_cursor_open(txn, STORE_AUDIT, &cur)) != 0)
		return rc;
	store_put_u64(key, done + 1);
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	    rc == 0 && n < INDEX_BATCH;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT), n++) {
		uint8_t ref[CRYPTO_REF_BYTES];
		int filed = VAULT_ERR_STATE;

		if (k.len != 8 || val.len < HDR ||
		    val.len > HDR + AUDIT_BODY_MAX ||
		    ((filed = body_index_key(al,
		    (const uint8_t *)val.data + HDR, val.len - HDR,
		    ref)) != 0 && filed != VAULT_ERR_NOT_FOUND)) {
			r = VAULT_ERR_STATE;	/* VerifyAudit names the entry */
			break;
		}
		seq = store_get_u64(k.data);
		/*
		 * Entries of writes were indexed with them: a look-up each on
		 * LMDB, an insert that changes nothing on PostgreSQL.
		 */
		if (filed == 0 && (r = index_put(txn, ref, seq)) != 0)
			break;
	}
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	job->more = r == 0 && rc == 0;
	store_cursor_close(cur);
	if (r == 0 && seq > done)
		r = put_indexed(txn, seq);
	return r;
}

int
audit_index(struct audit_log *al, bool *more)
{
	struct index_job job = { al, false };
	int r = writer_submit_lazy(al->wr, index_apply, &job);

	*more = job.more;
	return r;
}

/* Before its first entry, a store's index is complete by definition. */
static int
index_init_apply(struct store_txn *txn, void *arg)
{
	uint8_t hash[AUDIT_HASH_BYTES];
	uint64_t seq, head;
	int r;

	(void)arg;
	/* Already set: r is 0, or the error. */
	if ((r = meta_get_u64(txn, META_AUDIT_INDEXED, 0,
	    &seq)) != VAULT_ERR_NOT_FOUND)
		return r;
	/* A store from before the index was built in batches: all indexed. */
	if ((r = audit_head(txn, &head, hash)) != 0)
		return r;
	return put_indexed(txn, head);
}

int
audit_index_init(struct audit_log *al)
{
	return writer_submit(al->wr, index_init_apply, NULL);
}

/* How many entries wait to be indexed, in a snapshot of now. */
static int
index_lag(struct audit_log *al, uint64_t *lag)
{
	uint8_t hash[AUDIT_HASH_BYTES];
	uint64_t done, head;
	struct store_txn *txn;
	int r;

	*lag = 0;
	if ((r = store_read_begin(al->store, &txn)) != 0)
		return r;
	if ((r = get_indexed(txn, &done)) == 0 &&
	    (r = audit_head(txn, &head, hash)) == 0 && head > done)
		*lag = head - done;
	store_read_end(txn);
	return r;
}

/* Catches the index up. */
static int
index_all(struct audit_log *al)
{
	bool more = true;
	int r = 0;

	while (more && r == 0)
		r = audit_index(al, &more);
	return r;
}

struct append_job {
	struct audit_log *al;
	const struct audit_rec *rec;
};

static int
append_apply(struct store_txn *txn, void *arg)
{
	struct append_job *job = arg;

	return audit_append_txn(job->al, txn, job->rec);
}

int
audit_append(struct audit_log *al, const struct audit_rec *rec)
{
	struct append_job job = { al, rec };

	return writer_submit(al->wr, append_apply, &job);
}

/* Methods whose entries, before names had a field, held them in detail. */
static bool
named_in_detail(const char *method)
{
	static const char *const m[] = { "/vault.v1.Consumers/PutAttributes",
	    "/vault.v1.Consumers/GetAttributes", "/vault.v1.Features/FetchFeatures" };

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (strcmp(method, m[i]) == 0)
			return true;
	return false;
}

/* An entry from before names and source had fields: what its detail held. */
static void
map_v1_detail(struct audit_entry *e)
{
	static const char *const kinds[] = { "export", "query", "delete" };

	if (strncmp(e->detail, "source=", 7) == 0) {
		/* detail is longer than source: cut to whole characters. */
		size_t n = strlen(e->detail + 7);

		if (n >= sizeof(e->source))
			n = utf8_prefix(e->detail + 7, sizeof(e->source) - 1);
		memcpy(e->source, e->detail + 7, n);
		e->source[n] = '\0';
		e->detail[0] = '\0';
	} else if (named_in_detail(e->method)) {
		/* "*" stood for every attribute: the entry does not say which. */
		if (strcmp(e->detail, "*") != 0)
			snprintf(e->names, sizeof(e->names), "%s", e->detail);
		e->detail[0] = '\0';
	}
	/* These said what the call was; audit_kind(method) says it now. */
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(e->detail, kinds[i]) == 0)
			e->detail[0] = '\0';
}

/* Decodes a record; VAULT_ERR_STATE when it is malformed. */
static int
parse(uint64_t seq, const struct store_val *val, struct audit_entry *e)
{
	const uint8_t *p = val->data;
	char *dst[N_FIELDS] = { e->principal, e->method, NULL, e->detail,
	    e->purpose, e->dataset, e->outcome, e->names, e->source };
	size_t cap[N_FIELDS] = { sizeof(e->principal), sizeof(e->method), 0,
	    sizeof(e->detail), sizeof(e->purpose), sizeof(e->dataset),
	    sizeof(e->outcome), sizeof(e->names), sizeof(e->source) };
	struct body b;
	size_t len;

	memset(e, 0, sizeof(*e));
	if (val->len < HDR || val->len > HDR + AUDIT_BODY_MAX ||
	    p[0] != REC_FORMAT)
		return VAULT_ERR_STATE;
	len = val->len - HDR;
	if (body_fields(p + HDR, len, &b) != 0)
		return VAULT_ERR_STATE;
	e->seq = seq;
	e->at_ms = store_get_u64(p + REC_AT);
	memcpy(e->prev, p + REC_PREV, AUDIT_HASH_BYTES);
	memcpy(e->hash, p + REC_HASH, AUDIT_HASH_BYTES);
	e->has_ref = b.n[F_REF] != 0;
	memcpy(e->ref, b.f[F_REF], b.n[F_REF]);
	for (int i = 0; i < N_FIELDS; i++)
		if (i != F_REF)
			audit_text_copy(dst[i], cap[i], b.f[i], b.n[i]);
	if (b.count == N_FIELDS_V1)
		map_v1_detail(e);
	return 0;
}

int
audit_entry_decode(uint64_t seq, const uint8_t *rec, size_t len,
    struct audit_entry *e)
{
	struct store_val val = { len, rec };

	return parse(seq, &val, e);
}

size_t
audit_split_names(char *names, char **out, size_t max)
{
	size_t n = 0;

	for (char *save = NULL, *t = strtok_r(names, ",", &save); t && n < max;
	    t = strtok_r(NULL, ",", &save))
		out[n++] = t;
	return n;
}

const char *
audit_kind(const char *method)
{
	static const struct { const char *method, *kind; } t[] = {
		{ "/vault.v1.Consumers/PutAttributes", "write" },
		{ "/vault.v1.Consumers/GetAttributes", "read" },
		{ "/vault.v1.Consumers/SetConsent", "consent" },
		{ "/vault.v1.Consumers/ExportConsumer", "export" },
		{ "/vault.v1.Features/FetchFeatures", "feature_release" },
		{ "/vault.v1.Deletion/DeleteConsumer", "delete" },
		{ "/vault.v1.Deletion/DeleteConsumers", "delete" },
		{ "/vault.v1.Keys/RotateConsumerKey", "rekey" },
		{ "/vault.v1.Keys/RotateMasterKey", "key_rotation" },
		{ "/vault.v1.Keys/DestroyMasterKey", "key_destruction" },
		{ "/vault.v1.Audit/QueryAudit", "audit_query" },
		{ AUDIT_METHOD_PURGE, "purge" },
		{ AUDIT_METHOD_RETENTION, "retention" },
		{ AUDIT_METHOD_INACTIVE, "delete" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(method, t[i].method) == 0)
			return t[i].kind;
	return "";
}

static int
visit_seq(struct store_txn *txn, uint64_t seq, audit_visit fn,
    void *arg, int *stop)
{
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	struct audit_entry e;
	int rc;

	store_put_u64(key, seq);
	if ((rc = store_get(txn, STORE_AUDIT, k.data, k.len,
	    &val)) == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (parse(seq, &val, &e) != 0)
		return VAULT_ERR_STATE;
	*stop = fn(&e, arg);
	return 0;
}

/*
 * One page of entries after *after (all, or of ref through the index), in
 * one read txn. By ref, only entries up to the index position (*indexed,
 * in that snapshot) are read; *stopped tells that fn asked to stop.
 */
static int
scan_page(struct audit_log *al, uint64_t *after, const uint8_t *ref, audit_visit fn,
    void *arg, bool *done, uint64_t *indexed, bool *stopped)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	uint8_t key[8];
	struct store_val k, val;
	int rc, r, stop = 0;
	size_t n = 0;

	*done = false;
	*stopped = false;
	if ((r = store_read_begin(al->store, &txn)) != 0)
		return r;
	if (ref != NULL && (r = get_indexed(txn, indexed)) != 0)
		goto out;
	if ((rc = store_cursor_open(txn, ref ? STORE_AUDIT_REF : STORE_AUDIT,
	    &cur)) != 0) {
		r = rc;
		goto out;
	}
	store_put_u64(key, *after + 1);
	if (ref != NULL) {
		k = (struct store_val){ CRYPTO_REF_BYTES, (void *)ref };
		val = (struct store_val){ 8, key };
		rc = store_cursor_get(cur, &k, &val, STORE_SEEK_DUP);
	} else {
		k = (struct store_val){ 8, key };
		rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	}
	for (; rc == 0 && !stop && n < PAGE; n++) {
		uint64_t seq = store_get_u64(ref ? val.data : k.data);
		struct audit_entry e;

		/* Past the position, scan_tail reads the log instead. */
		if (ref != NULL && seq > *indexed) {
			rc = VAULT_ERR_NOT_FOUND;
			break;
		}

		if (ref != NULL) {
			if ((r = visit_seq(txn, seq, fn, arg, &stop)) != 0)
				goto out;
		} else {
			if (parse(seq, &val, &e) != 0) {
				r = VAULT_ERR_STATE;
				goto out;
			}
			stop = fn(&e, arg);
		}
		*after = seq;
		rc = store_cursor_get(cur, &k, &val,
		    ref ? STORE_NEXT_DUP : STORE_NEXT);
	}
	if (rc == VAULT_ERR_NOT_FOUND || stop)
		*done = true;
	else if (rc != 0)
		r = rc;
	*stopped = stop != 0;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	return r;
}

/* The entries of ref after seq from, read from the log itself. */
static int
scan_tail(struct audit_log *al, uint64_t from, const uint8_t *ref, audit_visit fn,
    void *arg)
{
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	int rc, r, stop = 0;

	if ((r = store_read_begin(al->store, &txn)) != 0)
		return r;
	if ((rc = store_cursor_open(txn, STORE_AUDIT, &cur)) != 0) {
		r = rc;
		goto out;
	}
	store_put_u64(key, from + 1);
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0 && !stop;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		uint8_t eref[CRYPTO_REF_BYTES];
		struct audit_entry e;
		int filed = VAULT_ERR_STATE;

		if (k.len != 8 || val.len < HDR ||
		    val.len > HDR + AUDIT_BODY_MAX ||
		    ((filed = body_index_key(al,
		    (const uint8_t *)val.data + HDR, val.len - HDR,
		    eref)) != 0 && filed != VAULT_ERR_NOT_FOUND)) {
			r = VAULT_ERR_STATE;
			goto out;
		}
		if (filed != 0 || memcmp(eref, ref, CRYPTO_REF_BYTES) != 0)
			continue;
		if (parse(store_get_u64(k.data), &val, &e) != 0) {
			r = VAULT_ERR_STATE;
			goto out;
		}
		stop = fn(&e, arg);
	}
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
out:
	store_cursor_close(cur);
	store_read_end(txn);
	return r;
}

/*
 * Entries a scan read, handed to the caller's visit after the read
 * transaction ended: a visit that waits (a stream's send to a client that
 * does not read) must not hold a snapshot, which on PostgreSQL is a pooled
 * connection every other reader of the replica needs.
 */
struct collected {
	struct audit_entry *e;
	size_t n, cap;
	bool nomem;
};

static int
collect(const struct audit_entry *e, void *arg)
{
	struct collected *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct audit_entry *m = realloc(c->e, cap * sizeof(*m));

		if (m == NULL) {
			c->nomem = true;
			return 1;
		}
		c->e = m;
		c->cap = cap;
	}
	c->e[c->n++] = *e;
	return 0;
}

/* Visits what was collected; true when fn asked to stop. */
static bool
replay(struct collected *c, audit_visit fn, void *arg)
{
	bool stop = false;

	for (size_t i = 0; i < c->n && !stop; i++)
		stop = fn(&c->e[i], arg) != 0;
	c->n = 0;
	return stop;
}

static uint64_t
tail_max(const struct audit_log *al)
{
	return store_in_process(al->store) ? TAIL_MAX_IN_PROCESS :
	    TAIL_MAX_REMOTE;
}

int
audit_log_scan(struct audit_log *al, uint64_t after_seq, const uint8_t *ref,
    audit_visit fn, void *arg)
{
	bool done = false, stopped = false, ignored;
	uint64_t indexed = 0, lag;
	struct collected c = { NULL, 0, 0, false };
	int r = 0;

	/*
	 * By consumer: the index, then the entries after it, read from the log
	 * itself; an index far behind (no journal thread) is caught up first.
	 */
	if (ref != NULL && (r = index_lag(al, &lag)) == 0 && lag > tail_max(al))
		r = index_all(al);
	while (!done && !stopped && r == 0) {
		r = scan_page(al, &after_seq, ref, collect, &c, &done, &indexed,
		    &ignored);
		if (r == 0 && c.nomem)
			r = VAULT_ERR_NOMEM;
		if (r == 0)
			stopped = replay(&c, fn, arg);
	}
	if (r == 0 && ref != NULL && !stopped) {
		r = scan_tail(al, after_seq > indexed ? after_seq : indexed, ref,
		    collect, &c);
		if (r == 0 && c.nomem)
			r = VAULT_ERR_NOMEM;
		if (r == 0)
			replay(&c, fn, arg);
	}
	if (c.e != NULL)
		sodium_memzero(c.e, c.cap * sizeof(*c.e));
	free(c.e);
	return r;
}

/* ------------------------------------------------ checks, checkpoint */

struct checkpoint {
	bool found, bad;		/* bad: it fails its MAC */
	uint64_t seq;
	uint8_t hash[AUDIT_HASH_BYTES];
};

static void
checkpoint_mac(const uint8_t *key, const uint8_t signed_part[CP_SIGNED],
    uint8_t out[AUDIT_HASH_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, CRYPTO_KEY_BYTES, AUDIT_HASH_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)CP_DOMAIN,
	    sizeof(CP_DOMAIN) - 1);
	crypto_generichash_update(&st, signed_part, CP_SIGNED);
	crypto_generichash_final(&st, out, AUDIT_HASH_BYTES);
}

static int
checkpoint_get(struct audit_log *al, struct store_txn *txn,
    struct checkpoint *cp)
{
	struct store_val val;
	uint8_t mac[AUDIT_HASH_BYTES];
	const uint8_t *p;
	int rc = meta_get(txn, META_AUDIT_CHECKPOINT, 0, &val);

	memset(cp, 0, sizeof(*cp));
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	cp->found = true;
	p = val.data;
	if (val.len != CP_BYTES || p[0] != CP_FORMAT) {
		cp->bad = true;
		return 0;
	}
	checkpoint_mac(keyring_audit_key(al->kr), p, mac);
	cp->bad = sodium_memcmp(mac, p + CP_SIGNED, AUDIT_HASH_BYTES) != 0;
	cp->seq = store_get_u64(p + CP_SEQ);
	memcpy(cp->hash, p + CP_HASH, AUDIT_HASH_BYTES);
	return 0;
}

/* The first entry missing below seq: one past the last entry before it. */
static uint64_t
first_missing(struct store_cursor *cur, uint64_t seq)
{
	uint8_t key[8];
	struct store_val k = { 8, key }, val;
	int rc;

	store_put_u64(key, seq);
	rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
	rc = store_cursor_get(cur, &k, &val, rc == 0 ? STORE_PREV : STORE_LAST);
	if (rc != 0 || k.len != 8 || store_get_u64(k.data) >= seq)
		return 1;
	return store_get_u64(k.data) + 1;
}

static void
bad_at(struct audit_check *c, uint64_t seq, const char *why)
{
	c->first_bad = seq;
	c->why = why;
}

/*
 * The chain in txn, from entry 1 (whole) or from the checkpoint's entry,
 * whose hash the checkpoint vouches for. end_hash: the last entry's hash.
 */
static int
check_txn(struct audit_log *al, struct store_txn *txn, bool whole,
    struct audit_check *c,
    uint8_t end_hash[AUDIT_HASH_BYTES], uint8_t head[AUDIT_HASH_BYTES])
{
	const uint8_t *akey = keyring_audit_key(al->kr);
	uint8_t prev[AUDIT_HASH_BYTES] = { 0 }, h[AUDIT_HASH_BYTES], key[8];
	struct checkpoint cp;
	uint64_t head_seq, expect;
	struct store_cursor *cur = NULL;
	struct store_val k = { 8, key }, val;
	bool anchored, cp_ok, missing = false;
	int rc, r;

	memset(c, 0, sizeof(*c));
	if ((r = checkpoint_get(al, txn, &cp)) != 0 ||
	    (r = audit_head(txn, &head_seq, head)) != 0)
		return r;
	c->checkpoint_bad = cp.bad;
	cp_ok = cp.found && !cp.bad && cp.seq > 0;
	c->checkpoint = cp_ok ? cp.seq : 0;
	anchored = cp_ok && !whole;
	expect = c->from = anchored ? cp.seq : 1;
	if ((rc = store_cursor_open(txn, STORE_AUDIT, &cur)) != 0)
		return rc;
	store_put_u64(key, expect);
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const uint8_t *p = val.data;
		uint64_t seq = k.len == 8 ? store_get_u64(k.data) : 0;

		c->entries++;
		if (seq != expect) {
			bad_at(c, expect, "is missing");
			missing = true;
			break;
		}
		if (val.len < HDR || val.len > HDR + AUDIT_BODY_MAX ||
		    p[0] != REC_FORMAT) {
			bad_at(c, seq, "is malformed");
			break;
		}
		/* The checkpoint's entry: its hash, over its prev, is vouched for. */
		if (anchored && seq == cp.seq)
			memcpy(prev, p + REC_PREV, AUDIT_HASH_BYTES);
		if (sodium_memcmp(p + REC_PREV, prev, AUDIT_HASH_BYTES) != 0) {
			bad_at(c, seq, "does not follow the entry before it");
			break;
		}
		chain_hash(akey, seq, p + REC_AT, p + HDR, val.len - HDR, h);
		if (sodium_memcmp(h, p + REC_HASH, AUDIT_HASH_BYTES) != 0 ||
		    (cp_ok && seq == cp.seq &&
		    sodium_memcmp(h, cp.hash, AUDIT_HASH_BYTES) != 0)) {
			bad_at(c, seq, "was changed");
			break;
		}
		memcpy(prev, h, AUDIT_HASH_BYTES);
		expect++;
	}
	if (c->first_bad == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	else if (c->first_bad == 0 && cp_ok && expect <= cp.seq) {
		bad_at(c, expect, "is missing: the log ends before its checkpoint");
		missing = true;
	}
	/* Entries cut from the end show as a head the chain does not reach. */
	else if (c->first_bad == 0 && (expect - 1 != head_seq ||
	    sodium_memcmp(prev, head, AUDIT_HASH_BYTES) != 0))
		bad_at(c, expect, "does not match the recorded head");
	/* Missing from the checkpoint's entry on: maybe from before it. */
	if (r == 0 && missing && anchored && c->first_bad == cp.seq)
		c->first_bad = first_missing(cur, cp.seq);
	store_cursor_close(cur);
	if (r == 0 && c->first_bad == 0) {
		c->end = expect - 1;
		memcpy(end_hash, prev, AUDIT_HASH_BYTES);
	}
	return r;
}

struct record_job {
	struct audit_log *al;
	uint64_t seq;
	uint8_t hash[AUDIT_HASH_BYTES];
};

/* Moves the checkpoint forward, never back; a damaged one stays as evidence. */
static int
record_apply(struct store_txn *txn, void *arg)
{
	struct record_job *job = arg;
	struct audit_log *al = job->al;
	uint8_t rec[CP_BYTES];
	struct checkpoint cp;
	int r;

	if ((r = checkpoint_get(al, txn, &cp)) != 0)
		return r;
	if (cp.bad || (cp.found && cp.seq >= job->seq))
		return 0;
	rec[0] = CP_FORMAT;
	store_put_u64(rec + CP_SEQ, job->seq);
	memcpy(rec + CP_HASH, job->hash, AUDIT_HASH_BYTES);
	checkpoint_mac(keyring_audit_key(al->kr), rec, rec + CP_SIGNED);
	return meta_put(txn, META_AUDIT_CHECKPOINT, 0, rec, sizeof(rec));
}

int
audit_check(struct audit_log *al, bool whole, bool record, struct audit_check *c)
{
	struct record_job job = { al, 0, { 0 } };
	uint8_t head[AUDIT_HASH_BYTES];
	struct store_txn *txn = NULL;
	int r;

	memset(c, 0, sizeof(*c));
	/* One snapshot, so appends during the check do not confuse it. */
	if ((r = store_read_begin(al->store, &txn)) != 0)
		return r;
	r = check_txn(al, txn, whole, c, job.hash, head);
	store_read_end(txn);
	if (r != 0 || !record || !audit_check_ok(c) || c->end <= c->checkpoint)
		return r;
	job.seq = c->end;
	if ((r = writer_submit_lazy(al->wr, record_apply, &job)) == 0)
		VAULT_CRASH_POINT("audit.checkpoint");
	return r;
}

void
audit_check_describe(const struct audit_check *c, char *buf, size_t len)
{
	int n = 0;

	if (c->checkpoint_bad)
		n = snprintf(buf, len, "the checkpoint fails its MAC (it was "
		    "changed outside vaultd)%s", c->first_bad ? "; and " : "");
	if (n < 0 || (size_t)n >= len)
		return;
	if (c->first_bad != 0)
		snprintf(buf + n, len - (size_t)n, "entry %llu %s (%llu entries "
		    "read from entry %llu)", (unsigned long long)c->first_bad,
		    c->why, (unsigned long long)c->entries,
		    (unsigned long long)c->from);
}

int
audit_log_verify(struct audit_log *al, uint64_t *entries, uint8_t head[AUDIT_HASH_BYTES],
    uint64_t *first_bad)
{
	uint8_t end[AUDIT_HASH_BYTES];
	struct audit_check c;
	struct store_txn *txn = NULL;
	int r;

	*entries = 0;
	*first_bad = 0;
	if ((r = store_read_begin(al->store, &txn)) != 0)
		return r;
	r = check_txn(al, txn, true, &c, end, head);
	store_read_end(txn);
	*entries = c.entries;
	*first_bad = c.first_bad;
	return r;
}
