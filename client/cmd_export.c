/*
 * vaultctl export CONSUMER: the right to know, as one JSON document.
 * "outside_schema" names the attributes (in "attributes") that the schema
 * no longer has; "expires_at_ms" gives, for those whose attribute has
 * retain_days, when each value expires.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

static json_t *
strings(char **s, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(s[i]));
	return a;
}

static json_t *
to_json(const Vault__V1__ExportConsumerResponse *r)
{
	json_t *attrs = json_object(), *consents = json_array(),
	    *history = json_array(), *outside = json_array(),
	    *changes = json_array(), *admt = json_array(),
	    *expires = json_object();

	for (size_t i = 0; i < r->n_attributes; i++) {
		json_object_set_new(attrs, r->attributes[i]->name,
		    json_string(r->attributes[i]->value));
		if (r->attributes[i]->expires_at_ms != 0)
			json_object_set_new(expires, r->attributes[i]->name,
			    json_integer(r->attributes[i]->expires_at_ms));
		if (r->attributes[i]->outside_schema)
			json_array_append_new(outside,
			    json_string(r->attributes[i]->name));
	}
	for (size_t i = 0; i < r->n_consents; i++)
		json_array_append_new(consents, json_pack("{s:s,s:b,s:s,s:I}",
		    "purpose", r->consents[i]->purpose, "granted",
		    r->consents[i]->granted, "source", r->consents[i]->source,
		    "updated_at_ms", (json_int_t)r->consents[i]->updated_at_ms));
	for (size_t i = 0; i < r->n_consent_history; i++) {
		const Vault__V1__ConsentEvent *c = r->consent_history[i];

		json_array_append_new(changes, json_pack(
		    "{s:I,s:s,s:b,s:b,s:b,s:b,s:s,s:s}", "at_ms",
		    (json_int_t)c->at_ms, "purpose", c->purpose, "granted",
		    c->granted, "limit_sensitive", c->limit_sensitive,
		    "opt_out_sale_share", c->opt_out_sale_share, "opt_out_admt",
		    c->opt_out_admt, "source", c->source, "principal",
		    c->principal));
	}
	for (size_t i = 0; i < r->n_access_history; i++) {
		const Vault__V1__AccessRecord *a = r->access_history[i];

		json_array_append_new(history, json_pack(
		    "{s:I,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:I}",
		    "at_ms", (json_int_t)a->at_ms, "kind", a->kind,
		    "principal", a->principal, "method", a->method,
		    "purpose", a->purpose, "attribute_names",
		    strings(a->attribute_names, a->n_attribute_names),
		    "dataset_id", a->dataset_id, "source", a->source,
		    "outcome", a->outcome, "audit_seq", (json_int_t)a->audit_seq));
	}
	for (size_t i = 0; i < r->n_admt_uses; i++) {
		const Vault__V1__AdmtUse *u = r->admt_uses[i];

		json_array_append_new(admt, json_pack("{s:s,s:s,s:I,s:I,s:o}",
		    "dataset_id", u->dataset_id, "purpose", u->purpose,
		    "first_fetched_at_ms", (json_int_t)u->first_fetched_at_ms,
		    "last_fetched_at_ms", (json_int_t)u->last_fetched_at_ms,
		    "attributes", strings(u->attributes, u->n_attributes)));
	}
	return json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:b,s:b,s:b,s:o,s:o,s:o,s:o,s:b}",
	    "consumer_ref", r->consumer_ref, "created_at_ms",
	    (json_int_t)r->created_at_ms, "attributes", attrs, "expires_at_ms",
	    expires, "outside_schema", outside, "consents", consents, "limit_sensitive", r->limit_sensitive,
	    "opt_out_sale_share", r->opt_out_sale_share, "opt_out_admt",
	    r->opt_out_admt, "datasets", strings(r->datasets, r->n_datasets),
	    "admt_uses", admt, "access_history", history,
	    "consent_history", changes, "consent_history_truncated",
	    r->consent_history_truncated);
}

int
cmd_export(struct ctl *ctl, int argc, char **argv)
{
	Vault__V1__ExportConsumerRequest req = VAULT__V1__EXPORT_CONSUMER_REQUEST__INIT;
	Vault__V1__ExportConsumerResponse *resp = NULL;
	struct vc_status st;
	json_t *o;

	if (argc == 3 && strcmp(argv[1], "--") == 0)
		argv++, argc--;		/* "--": CONSUMER may start with "-" */
	if (argc != 2)
		return ctl_usage("export CONSUMER");
	req.consumer_id = argv[1];
	if (vc_unary(ctl->vc, "/vault.v1.Consumers/ExportConsumer", &req.base,
	    &vault__v1__export_consumer_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	o = to_json(resp);
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(o);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}
