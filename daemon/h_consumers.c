#include <string.h>

#include "consumer.h"
#include "handlers.h"
#include "vault.h"
#include "vault/v1/vault.pb-c.h"

int
handler_check_consumer_id(struct rpc_ctx *ctx, const char *id)
{
	const struct vault *v = rpc_app(ctx);
	const char *why = schema_check_consumer_id(id, strlen(id),
	    (size_t)v->cfg->max_consumer_id_bytes);

	if (why != NULL)
		return rpc_fail(ctx, VAULT_ERR_INVALID, "consumer_id: %s", why);
	return 0;
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

		if (idx < 0)
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "attributes[%zu].name: unknown attribute", i);
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

	if ((r = handler_check_consumer_id(ctx, req->consumer_id)) != 0 ||
	    (r = check_put(ctx, v, req, in)) != 0)
		return r;
	if ((r = consumer_put(v, req->consumer_id, strlen(req->consumer_id), in,
	    req->n_attributes, &created, ref)) != 0)
		return r == VAULT_ERR_LIMIT ?
		    rpc_fail(ctx, r, "the store is full") : r;
	crypto_hex(ref, sizeof(ref), ref_hex);
	resp.created = created;
	resp.written = (uint32_t)req->n_attributes;
	resp.consumer_ref = ref_hex;
	return rpc_reply(ctx, &resp.base);
}

static int
check_get(struct rpc_ctx *ctx, const struct vault *v,
    const Vault__V1__GetAttributesRequest *req, int *idx)
{
	bool seen[SCHEMA_MAX_ATTRS] = { false };

	if (req->purpose[0] != '\0') {
		if (schema_find_purpose(v->schema, req->purpose,
		    strlen(req->purpose)) < 0)
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "purpose: unknown purpose");
		if (!auth_purpose_allowed(rpc_principal(ctx), req->purpose,
		    strlen(req->purpose)))
			return rpc_fail(ctx, VAULT_ERR_DENIED,
			    "purpose: principal '%s' may not use purpose '%s'",
			    rpc_principal(ctx)->name, req->purpose);
	}
	if (req->n_names > v->schema->n_attrs)
		return rpc_fail(ctx, VAULT_ERR_INVALID,
		    "names: more names than the schema has attributes");
	for (size_t i = 0; i < req->n_names; i++) {
		idx[i] = schema_find_attr(v->schema, req->names[i],
		    strlen(req->names[i]));
		if (idx[i] < 0)
			return rpc_fail(ctx, VAULT_ERR_INVALID,
			    "names[%zu]: unknown attribute", i);
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
	struct vault *v = rpc_app(ctx);
	struct consumer_values cv;
	char ref_hex[CRYPTO_REF_BYTES * 2 + 1];
	int idx[SCHEMA_MAX_ATTRS];
	int r;

	if ((r = handler_check_consumer_id(ctx, req->consumer_id)) != 0 ||
	    (r = check_get(ctx, v, req, idx)) != 0)
		return r;
	r = consumer_get(v, req->consumer_id, strlen(req->consumer_id), idx,
	    req->n_names, &cv);
	if (r == VAULT_ERR_NOT_FOUND)
		return rpc_fail(ctx, r, "consumer not found");
	if (r != 0)
		return r;
	for (size_t i = 0; i < cv.n; i++) {
		vault__v1__attribute__init(&attrs[i]);
		attrs[i].name = (char *)v->schema->attrs[cv.v[i].attr].name;
		attrs[i].value = (char *)cv.v[i].value;
		attrs[i].updated_at_ms = (int64_t)cv.v[i].updated_ms;
		ptrs[i] = &attrs[i];
	}
	crypto_hex(cv.ref, sizeof(cv.ref), ref_hex);
	resp.n_attributes = cv.n;
	resp.attributes = ptrs;
	resp.consumer_ref = ref_hex;
	r = rpc_reply(ctx, &resp.base);
	consumer_values_clear(&cv);
	return r;
}
