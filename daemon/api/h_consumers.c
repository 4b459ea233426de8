#include <stdio.h>
#include <string.h>

#include "engine/consent.h"
#include "engine/consumer.h"
#include "api/handlers.h"
#include "engine/vault.h"
#include "vault/v1/vault.pb-c.h"

int
handler_consumer_ref(struct rpc_ctx *ctx, const char *id,
    uint8_t ref[CRYPTO_REF_BYTES])
{
	const struct vault *v = rpc_app(ctx);
	const char *why = schema_check_consumer_id(id, strlen(id),
	    (size_t)v->cfg->max_consumer_id_bytes);

	if (why != NULL)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "consumer_id: %s", why);
	/* The audit log records whom the call was about, by ref only. */
	crypto_consumer_ref(keyring_index_key(v->kr), id, strlen(id), ref);
	rpc_audit_ref(ctx, ref);
	return 0;
}

void
handler_audit_names(struct rpc_ctx *ctx, const struct schema *s,
    const int *idx, size_t n)
{
	char buf[sizeof(((struct rpc_audit *)0)->names)];
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(s->attrs[idx[i]].name) + (i ? 1 : 0);

		/* Whole names only: a cut one would name another attribute. */
		if (off + len >= sizeof(buf))
			break;
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s",
		    i ? "," : "", s->attrs[idx[i]].name);
	}
	rpc_audit_names(ctx, buf);
}

/* Validates every attribute first: a put is all or nothing. */
static int
check_put(struct rpc_ctx *ctx, const struct vault *v,
    const Vault__V1__PutAttributesRequest *req, struct attr_in *in)
{
	bool seen[SCHEMA_MAX_ATTRS] = { false };

	if (req->n_attributes == 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID,
		    "attributes: at least one attribute is required");
	if (req->n_attributes > (size_t)v->cfg->max_attributes_per_request)
		return rpc_fail(ctx, VAULT_ERR_INVALID,
		    "attributes: at most %d attributes per request",
		    v->cfg->max_attributes_per_request);
	for (size_t i = 0; i < req->n_attributes; i++) {
		const Vault__V1__Attribute *a = req->attributes[i];
		int idx = schema_find_attr(v->schema, a->name, strlen(a->name));
		const char *why;

		if (idx < 0) {
			char field[48];

			snprintf(field, sizeof(field), "attributes[%zu].name", i);
			return handler_unknown_attr(ctx, v->schema, field, a->name);
		}
		if (seen[idx])
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "attributes[%zu].name: attribute '%s' appears twice",
			    i, v->schema->attrs[idx].name);
		seen[idx] = true;
		why = schema_check_value(&v->schema->attrs[idx], a->value,
		    strlen(a->value));
		if (why != NULL)
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "attributes[%zu].value: %s (attribute '%s', type %s, "
			    "max_length %u)", i, why, v->schema->attrs[idx].name,
			    schema_type_name(v->schema->attrs[idx].type),
			    v->schema->attrs[idx].max_length);
		in[i] = (struct attr_in){ idx, a->value, strlen(a->value) };
	}
	return 0;
}

int
handle_put_attributes(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__PutAttributesRequest *req = (const void *)msg;
	Vault__V1__PutAttributesResponse resp =
	    VAULT__V1__PUT_ATTRIBUTES_RESPONSE__INIT;
	struct vault *v = rpc_app(ctx);
	struct attr_in in[SCHEMA_MAX_ATTRS];
	uint8_t ref[CRYPTO_REF_BYTES];
	char ref_hex[CRYPTO_REF_BYTES * 2 + 1];
	bool created = false;
	int r;

	if ((r = handler_consumer_ref(ctx, req->consumer_id, ref)) != 0 ||
	    (r = check_put(ctx, v, req, in)) != 0)
		return r;
	{
		int idx[SCHEMA_MAX_ATTRS];

		for (size_t i = 0; i < req->n_attributes; i++)
			idx[i] = in[i].attr;
		handler_audit_names(ctx, v->schema, idx, req->n_attributes);
	}
	if ((r = consumer_put(v, ref, in, req->n_attributes, &created)) != 0)
		return r == VAULT_ERR_LIMIT ?
		    rpc_fail(ctx, r, "the store is full") : r;
	crypto_hex(ref, sizeof(ref), ref_hex);
	resp.created = created;
	resp.written = (uint32_t)req->n_attributes;
	resp.consumer_ref = ref_hex;
	return rpc_reply(ctx, &resp.base);
}

/*
 * A purpose the schema does not have: audited as "(unknown)", never as
 * sent. Like the refusal (unknown_name.c), the audit log (on disk, in every
 * backup, read by auditors) must not keep it: a client that mixed up its
 * fields may have sent a consumer id or a value there.
 */
static int
audit_unknown_purpose(struct rpc_ctx *ctx, const struct vault *v,
    const char *sent)
{
	rpc_audit_purpose(ctx, "(unknown)");
	return handler_unknown_purpose(ctx, v->schema, sent);
}

/* Checks a purpose field: configured, and allowed for the caller. */
int
handler_check_purpose(struct rpc_ctx *ctx, const char *purpose, int *idx)
{
	const struct vault *v = rpc_app(ctx);

	if (purpose[0] == '\0')
		return rpc_fail(ctx, VAULT_ERR_INVALID, "purpose: required");
	if ((*idx = schema_find_purpose(v->schema, purpose, strlen(purpose))) < 0)
		return audit_unknown_purpose(ctx, v, purpose);
	rpc_audit_purpose(ctx, purpose);
	if (!auth_purpose_allowed(rpc_principal(ctx), purpose, strlen(purpose)))
		return rpc_fail(ctx, VAULT_ERR_DENIED,
		    "purpose: principal '%s' may not use purpose '%s'",
		    rpc_principal(ctx)->name, purpose);
	return 0;
}

static int
check_names(struct rpc_ctx *ctx, const struct vault *v, char **names,
    size_t n, int *idx)
{
	bool seen[SCHEMA_MAX_ATTRS] = { false };

	if (n > v->schema->n_attrs)
		return rpc_fail(ctx, VAULT_ERR_INVALID,
		    "names: more names than the schema has attributes");
	for (size_t i = 0; i < n; i++) {
		idx[i] = schema_find_attr(v->schema, names[i], strlen(names[i]));
		if (idx[i] < 0) {
			char field[48];

			snprintf(field, sizeof(field), "names[%zu]", i);
			return handler_unknown_attr(ctx, v->schema, field, names[i]);
		}
		if (seen[idx[i]])
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "names[%zu]: attribute '%s' appears twice", i,
			    v->schema->attrs[idx[i]].name);
		seen[idx[i]] = true;
	}
	return 0;
}

int
handle_get_attributes(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__GetAttributesRequest *req = (const void *)msg;
	Vault__V1__GetAttributesResponse resp =
	    VAULT__V1__GET_ATTRIBUTES_RESPONSE__INIT;
	Vault__V1__Attribute attrs[SCHEMA_MAX_ATTRS];
	Vault__V1__Attribute *ptrs[SCHEMA_MAX_ATTRS];
	char *withheld[SCHEMA_MAX_ATTRS];
	struct vault *v = rpc_app(ctx);
	struct consumer_values cv;
	uint8_t ref[CRYPTO_REF_BYTES];
	char ref_hex[CRYPTO_REF_BYTES * 2 + 1];
	int idx[SCHEMA_MAX_ATTRS];
	int purpose, r;

	if ((r = handler_consumer_ref(ctx, req->consumer_id, ref)) != 0 ||
	    (r = handler_check_purpose(ctx, req->purpose, &purpose)) != 0 ||
	    (r = check_names(ctx, v, req->names, req->n_names, idx)) != 0)
		return r;
	handler_audit_names(ctx, v->schema, idx, req->n_names);
	r = consumer_get(v, ref, purpose, idx, req->n_names, &cv);
	/* Asked for every attribute: the entry names those the reply holds. */
	if (r == 0 && req->n_names == 0) {
		for (size_t i = 0; i < cv.n; i++)
			idx[i] = cv.v[i].attr;
		handler_audit_names(ctx, v->schema, idx, cv.n);
	}
	if (r == VAULT_ERR_NOT_FOUND)
		return rpc_fail(ctx, r, "consumer not found");
	if (r == VAULT_ERR_CONSENT)
		return rpc_fail(ctx, r, "the consumer's consent does not cover "
		    "purpose '%s'", v->schema->purposes[purpose].name);
	if (r != 0)
		return r;
	for (size_t i = 0; i < cv.n; i++) {
		vault__v1__attribute__init(&attrs[i]);
		attrs[i].name = (char *)v->schema->attrs[cv.v[i].attr].name;
		attrs[i].value = (char *)cv.v[i].value;
		attrs[i].updated_at_ms = (int64_t)cv.v[i].updated_ms;
		ptrs[i] = &attrs[i];
	}
	for (size_t i = 0; i < cv.n_withheld; i++)
		withheld[i] = (char *)v->schema->attrs[cv.withheld[i]].name;
	crypto_hex(cv.ref, sizeof(cv.ref), ref_hex);
	resp.n_attributes = cv.n;
	resp.attributes = ptrs;
	resp.n_withheld = cv.n_withheld;
	resp.withheld = withheld;
	resp.consumer_ref = ref_hex;
	r = rpc_reply(ctx, &resp.base);
	consumer_values_clear(&cv);
	return r;
}

static enum flag_change
flag_change(Vault__V1__FlagChange f)
{
	return f == VAULT__V1__FLAG_CHANGE__FLAG_SET ? FLAG_SET :
	    f == VAULT__V1__FLAG_CHANGE__FLAG_CLEAR ? FLAG_CLEAR : FLAG_KEEP;
}

int
handle_set_consent(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Vault__V1__SetConsentRequest *req = (const void *)msg;
	Vault__V1__SetConsentResponse resp = VAULT__V1__SET_CONSENT_RESPONSE__INIT;
	struct vault *v = rpc_app(ctx);
	struct consent_change c = { .purpose = -1, .granted = req->granted,
	    .source = req->source, .limit_sensitive = flag_change(req->limit_sensitive),
	    .opt_out_sale_share = flag_change(req->opt_out_sale_share),
	    .opt_out_admt = flag_change(req->opt_out_admt),
	    .legal_hold = flag_change(req->legal_hold),
	    .principal = rpc_principal(ctx)->name };
	char ref_hex[CRYPTO_REF_BYTES * 2 + 1];
	uint8_t ref[CRYPTO_REF_BYTES], flags = 0;
	const char *why;
	bool created;
	int r;

	if ((r = handler_consumer_ref(ctx, req->consumer_id, ref)) != 0)
		return r;
	if (req->purpose[0] != '\0' && (c.purpose = schema_find_purpose(v->schema,
	    req->purpose, strlen(req->purpose))) < 0)
		return audit_unknown_purpose(ctx, v, req->purpose);
	rpc_audit_purpose(ctx, req->purpose);
	if ((why = consent_check_source(req->source)) != NULL)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "source: %s", why);
	rpc_audit_source(ctx, req->source);
	if (c.purpose < 0 && c.limit_sensitive == FLAG_KEEP &&
	    c.opt_out_sale_share == FLAG_KEEP && c.opt_out_admt == FLAG_KEEP &&
	    c.legal_hold == FLAG_KEEP &&
	    strcmp(req->source, "gpc") != 0 &&
	    strcmp(req->source, CONSENT_SOURCE_ADMT) != 0)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "nothing to change: give a "
		    "purpose, a flag, or source \"gpc\" or \"%s\"",
		    CONSENT_SOURCE_ADMT);
	r = consumer_set_consent(v, ref, &c, &flags, &created);
	if (r == VAULT_ERR_LIMIT)
		return rpc_fail(ctx, r, "the store is full: opt-outs of consumers "
		    "already in the vault are still accepted");
	if (r != 0)
		return r;
	crypto_hex(ref, sizeof(ref), ref_hex);
	resp.consumer_ref = ref_hex;
	resp.limit_sensitive = (flags & CONSENT_LIMIT_SENSITIVE) != 0;
	resp.opt_out_sale_share = (flags & CONSENT_OPT_OUT_SALE_SHARE) != 0;
	resp.opt_out_admt = (flags & CONSENT_OPT_OUT_ADMT) != 0;
	resp.legal_hold = (flags & CONSENT_LEGAL_HOLD) != 0;
	resp.created = created;
	return rpc_reply(ctx, &resp.base);
}
