#include <string.h>

#include "util/crashpoint.h"
#include "engine/consent.h"
#include "engine/requests.h"
#include "util/log.h"

#define FLAGS_KEY "#flags"
#define KEY_MAX (CRYPTO_REF_BYTES + SCHEMA_NAME_MAX)

const char *
consent_check_source(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONSENT_SOURCE_MAX)
		return "must be 1 to 32 characters";
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_' || s[i] == '-'))
			return "may hold only a-z, 0-9, '_' and '-'";
	return NULL;
}

static size_t
consent_key(uint8_t *key, const uint8_t *ref, const char *name)
{
	size_t n = strlen(name);

	memcpy(key, ref, CRYPTO_REF_BYTES);
	memcpy(key + CRYPTO_REF_BYTES, name, n);
	return CRYPTO_REF_BYTES + n;
}

static int
put_record(struct store_txn *txn, const uint8_t *ref,
    const char *name, uint8_t state, const char *source)
{
	uint8_t key[KEY_MAX], rec[CONSENT_REC_MAX];
	size_t n = strlen(source);
	struct store_val k = { consent_key(key, ref, name), key },
	    v = { CONSENT_SOURCE + n, rec };
	int rc;

	rec[0] = CONSENT_REC_FORMAT;
	rec[CONSENT_STATE] = state;
	store_put_u64(rec + CONSENT_UPDATED, store_now_ms());
	memcpy(rec + CONSENT_SOURCE, source, n);
	if ((rc = store_put(txn, STORE_CONSENTS, k.data, k.len, v.data, v.len,
	    0)) != 0)
		return rc;
	return 0;
}

/*
 * Decodes a consent record; VAULT_ERR_STATE when it has an unknown format.
 * *source points into v.
 */
static int
decode_record(const struct store_val *v, uint8_t *state, uint64_t *at_ms,
    const char **source, size_t *source_len)
{
	const uint8_t *p = v->data;

	if (v->len < CONSENT_SOURCE || v->len > CONSENT_REC_MAX ||
	    p[0] != CONSENT_REC_FORMAT)
		return VAULT_ERR_STATE;
	*state = p[CONSENT_STATE];
	*at_ms = store_get_u64(p + CONSENT_UPDATED);
	*source = (const char *)p + CONSENT_SOURCE;
	*source_len = v->len - CONSENT_SOURCE;
	return 0;
}

/* Reads one record's state byte; *found is false when there is none. */
static int
get_state(struct store_txn *txn, const uint8_t *ref,
    const char *name, bool *found, uint8_t *state)
{
	uint8_t key[KEY_MAX];
	struct store_val k = { consent_key(key, ref, name), key }, v;
	int rc = store_get(txn, STORE_CONSENTS, k.data, k.len, &v);
	const char *source;
	size_t source_len;
	uint64_t at_ms;

	*found = false;
	*state = 0;
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (decode_record(&v, state, &at_ms, &source, &source_len) != 0) {
		log_error("a consent record has an unknown format");
		return VAULT_ERR_STATE;
	}
	*found = true;
	return 0;
}

static uint8_t
apply_flag(uint8_t flags, uint8_t bit, enum flag_change c)
{
	if (c == FLAG_SET)
		return flags | bit;
	if (c == FLAG_CLEAR)
		return flags & (uint8_t)~bit;
	return flags;
}

#define HISTORY_KIND "consent"

/* In a write txn: the history record of change c, flags the state after. */
static int
log_change(struct store_txn *txn, const uint8_t *ref,
    const struct consent_change *c, const char *purpose, uint8_t flags)
{
	uint8_t more[REQUEST_MORE_MAX];
	const char *who = c->principal != NULL ? c->principal : "";
	size_t sn = strlen(c->source), wn = strlen(who), pn = strlen(purpose);
	size_t off = 0;

	if (wn > CONSENT_PRINCIPAL_MAX)
		wn = CONSENT_PRINCIPAL_MAX;
	/* flags | purpose state | source | principal | purpose name */
	more[off++] = flags;
	more[off++] = c->purpose < 0 ? 0 : c->granted ? 2 : 1;
	more[off++] = (uint8_t)sn;
	memcpy(more + off, c->source, sn);
	off += sn;
	more[off++] = (uint8_t)wn;
	memcpy(more + off, who, wn);
	off += wn;
	memcpy(more + off, purpose, pn);
	off += pn;
	return requests_log_more_txn(txn, HISTORY_KIND, ref, more, off);
}

/* Decodes what log_change wrote after the request record's ref. */
static bool
parse_change(const uint8_t *p, size_t len, struct consent_event *e)
{
	size_t off = 0, n;

	memset(e, 0, sizeof(*e));
	if (len < REQUEST_REC_BYTES + 4 || p[0] != REQUEST_REC_FORMAT)
		return false;
	e->at_ms = store_get_u64(p + REQUEST_AT);
	p += REQUEST_REC_BYTES;
	len -= REQUEST_REC_BYTES;
	e->flags = p[off++];
	e->has_purpose = p[off] != 0;
	e->granted = p[off++] == 2;
	if ((n = p[off++]) > CONSENT_SOURCE_MAX || n + 1 > len - off)
		return false;
	memcpy(e->source, p + off, n);
	off += n;
	if ((n = p[off++]) > CONSENT_PRINCIPAL_MAX || n > len - off)
		return false;
	memcpy(e->principal, p + off, n);
	off += n;
	if ((n = len - off) >= SCHEMA_NAME_MAX || (n == 0) == e->has_purpose)
		return false;
	memcpy(e->purpose, p + off, n);
	return true;
}

int
consent_history(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    size_t max, int (*fn)(const struct consent_event *e, void *arg),
    void *arg, bool *more)
{
	char prefix[sizeof(HISTORY_KIND) + 2 * CRYPTO_REF_BYTES + 2];
	struct store_txn *txn = NULL;
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	struct consent_event e;
	size_t n = 0;
	int rc, r = 0;

	*more = false;
	memcpy(prefix, HISTORY_KIND ":", sizeof(HISTORY_KIND));
	crypto_hex(ref, CRYPTO_REF_BYTES, prefix + sizeof(HISTORY_KIND));
	prefix[sizeof(prefix) - 2] = ':';
	prefix[sizeof(prefix) - 1] = '\0';
	k = (struct store_val){ sizeof(prefix) - 1, prefix };
	if ((r = store_read_begin(v->store, &txn)) != 0)
		return r;
	if ((rc = store_cursor_open(txn, STORE_REQUESTS, &cur)) != 0) {
		store_read_end(txn);
		return rc;
	}
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		if (k.len < sizeof(prefix) - 1 ||
		    memcmp(k.data, prefix, sizeof(prefix) - 1) != 0)
			break;
		if (!parse_change(val.data, val.len, &e))
			continue;
		if (n == max) {
			*more = true;
			break;
		}
		n++;
		if ((r = fn(&e, arg)) != 0)
			break;
	}
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	store_cursor_close(cur);
	store_read_end(txn);
	return r;
}

int
consent_apply_txn(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    const struct consent_change *c, uint8_t *flags_after)
{
	struct store *st = v->store;
	uint8_t flags, old;
	bool found;
	int r;

	if ((r = get_state(txn, ref, FLAGS_KEY, &found, &old)) != 0)
		return r;
	flags = apply_flag(old, CONSENT_LIMIT_SENSITIVE, c->limit_sensitive);
	flags = apply_flag(flags, CONSENT_OPT_OUT_SALE_SHARE, c->opt_out_sale_share);
	flags = apply_flag(flags, CONSENT_OPT_OUT_ADMT, c->opt_out_admt);
	flags = apply_flag(flags, CONSENT_LEGAL_HOLD, c->legal_hold);
	/* Global Privacy Control is an opt-out of sale and sharing. */
	if (strcmp(c->source, "gpc") == 0)
		flags |= CONSENT_OPT_OUT_SALE_SHARE;
	/* A request through an ADMT opt-out channel says so itself. */
	if (strcmp(c->source, CONSENT_SOURCE_ADMT) == 0)
		flags |= CONSENT_OPT_OUT_ADMT;
	/*
	 * A grant, or a flag lifted, is an ordinary write, refused in the
	 * headroom (store.h); opt-outs and limits always go through.
	 */
	if (((c->purpose >= 0 && c->granted) || (old & ~flags) != 0) &&
	    (r = store_room(st)) != 0)
		return r;
	if ((!found || flags != old) &&
	    (r = put_record(txn, ref, FLAGS_KEY, flags, c->source)) != 0)
		return r;
	if (c->purpose >= 0 && (r = put_record(txn, ref,
	    v->schema->purposes[c->purpose].name, c->granted ? 1 : 0,
	    c->source)) != 0)
		return r;
	/* The state it leaves, kept: consent evidence (consent_event). */
	if ((r = log_change(txn, ref, c, c->purpose >= 0 ?
	    v->schema->purposes[c->purpose].name : "", flags)) != 0)
		return r;
	/* Opt-outs and limits are requests a business must keep records of. */
	if (((c->purpose >= 0 && !c->granted) || (flags & ~old) != 0) &&
	    (r = requests_log_txn(txn, "optout", ref)) != 0)
		return r;
	*flags_after = flags;
	VAULT_CRASH_POINT("consent.before_commit");
	return 0;
}

int
consent_allows(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    int purpose, bool *allowed, uint8_t *flags)
{
	const struct purpose_def *p = &v->schema->purposes[purpose];
	uint8_t granted;
	bool found;
	int r;

	*allowed = false;
	if ((r = get_state(txn, ref, FLAGS_KEY, &found, flags)) != 0)
		return r;
	if (p->sale_or_share && (*flags & CONSENT_OPT_OUT_SALE_SHARE))
		return 0;
	if (p->admt && (*flags & CONSENT_OPT_OUT_ADMT))
		return 0;
	if ((r = get_state(txn, ref, p->name, &found, &granted)) != 0)
		return r;
	*allowed = found ? granted != 0 : !p->opt_in;
	return 0;
}

int
consent_delete_all(struct store_txn *txn, const uint8_t *ref)
{
	return store_delete_prefix(txn, STORE_CONSENTS, ref, CRYPTO_REF_BYTES);
}

int
consent_list(struct store_txn *txn, const uint8_t *ref,
    int (*fn)(const char *name, size_t len, uint8_t state, uint64_t at_ms,
    const char *source, size_t source_len, void *arg), void *arg)
{
	struct store_cursor *cur = NULL;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)ref }, val;
	int rc, r = 0;

	if ((rc = store_cursor_open(txn, STORE_CONSENTS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_SEEK); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		const char *source;
		size_t source_len;
		uint64_t at_ms;
		uint8_t state;

		if (k.len <= CRYPTO_REF_BYTES ||
		    memcmp(k.data, ref, CRYPTO_REF_BYTES) != 0)
			break;
		if (k.len > KEY_MAX || decode_record(&val, &state, &at_ms,
		    &source, &source_len) != 0) {
			r = VAULT_ERR_STATE;
			break;
		}
		if ((r = fn((const char *)k.data + CRYPTO_REF_BYTES,
		    k.len - CRYPTO_REF_BYTES, state, at_ms, source, source_len,
		    arg)) != 0)
			break;
	}
	store_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != VAULT_ERR_NOT_FOUND)
		r = rc;
	return r;
}

int
consent_flags(struct store_txn *txn, const uint8_t *ref, uint8_t *flags)
{
	bool found;

	return get_state(txn, ref, FLAGS_KEY, &found, flags);
}
