/*
 * The dispatch table: every method of the contract, its kind, its request
 * type and its handler. Who may call it is the policy's business (auth.h):
 * a method no role names is denied. A method whose handler is NULL is
 * answered UNIMPLEMENTED (after authorization); a path not in the table is
 * answered UNIMPLEMENTED at once.
 */
#include "api/handlers.h"
#include "conf/schema.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "vault/v1/admin.pb-c.h"
#include "vault/v1/vault.pb-c.h"

#define V1 "/vault.v1."
#define REQ(name) &vault__v1__##name##__descriptor

struct rpc_method dispatch_methods[] = {
	{ V1 "Consumers/PutAttributes", RPC_UNARY, REQ(put_attributes_request),
	  handle_put_attributes, 0 },
	{ V1 "Consumers/GetAttributes", RPC_UNARY, REQ(get_attributes_request),
	  handle_get_attributes, 0 },
	{ V1 "Consumers/SetConsent", RPC_UNARY, REQ(set_consent_request),
	  handle_set_consent, 0 },
	{ V1 "Consumers/ExportConsumer", RPC_UNARY, REQ(export_consumer_request),
	  handle_export_consumer, 0 },
	{ V1 "Features/FetchFeatures", RPC_SERVER_STREAM, REQ(fetch_features_request),
	  handle_fetch_features, 0 },
	{ V1 "Features/GetFeatureSpec", RPC_UNARY, REQ(get_feature_spec_request),
	  handle_get_feature_spec, 0 },
	{ V1 "Features/WatchConsent", RPC_SERVER_STREAM, REQ(watch_consent_request),
	  handle_watch_consent, 0 },
	{ V1 "Deletion/DeleteConsumer", RPC_UNARY, REQ(delete_consumer_request),
	  handle_delete_consumer, 0 },
	{ V1 "Deletion/DeleteConsumers", RPC_UNARY, REQ(delete_consumers_request),
	  handle_delete_consumers, 0 },
	{ V1 "Deletion/WatchDeletions", RPC_SERVER_STREAM, REQ(watch_deletions_request),
	  handle_watch_deletions, 0 },
	{ V1 "Deletion/ProcessDropList", RPC_UNARY, REQ(process_drop_list_request),
	  handle_process_drop_list, 0 },
	{ V1 "Keys/RotateMasterKey", RPC_SERVER_STREAM, REQ(rotate_master_key_request),
	  handle_rotate_master_key, 0 },
	{ V1 "Keys/GetKeyStatus", RPC_UNARY, REQ(get_key_status_request),
	  handle_get_key_status, 0 },
	{ V1 "Keys/DestroyMasterKey", RPC_UNARY, REQ(destroy_master_key_request),
	  handle_destroy_master_key, 0 },
	{ V1 "Keys/RotateConsumerKey", RPC_UNARY, REQ(rotate_consumer_key_request),
	  handle_rotate_consumer_key, 0 },
	{ V1 "Audit/QueryAudit", RPC_SERVER_STREAM, REQ(query_audit_request),
	  handle_query_audit, RPC_AUDIT_DENIALS_ONLY },
	{ V1 "Audit/VerifyAudit", RPC_UNARY, REQ(verify_audit_request),
	  handle_verify_audit, RPC_AUDIT_DENIALS_ONLY },
	{ V1 "Audit/AuditReport", RPC_UNARY, REQ(audit_report_request),
	  handle_audit_report, RPC_AUDIT_DENIALS_ONLY },
	{ V1 "Admin/Backup", RPC_SERVER_STREAM, REQ(backup_request),
	  handle_backup, 0 },
	{ V1 "Admin/ExportDeletions", RPC_SERVER_STREAM,
	  REQ(export_deletions_request), handle_export_deletions, 0 },
	{ "/grpc.health.v1.Health/Check", RPC_UNARY,
	  &grpc__health__v1__health_check_request__descriptor,
	  handle_health_check, RPC_PUBLIC },
	{ "/grpc.health.v1.Health/Watch", RPC_SERVER_STREAM,
	  &grpc__health__v1__health_check_request__descriptor,
	  handle_health_watch, RPC_PUBLIC },
	/*
	 * Server reflection, last: reflection_configure drops these two for
	 * reflection = "off", and sets who may call them (any authenticated
	 * principal by default, no role needed: they reveal the API, no data).
	 * One protocol under two names, so v1 is decoded with v1alpha's types.
	 */
	{ "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	  RPC_BIDI_STREAM,
	  &grpc__reflection__v1alpha__server_reflection_request__descriptor,
	  handle_reflection, RPC_ANY_PRINCIPAL | RPC_AUDIT_DENIALS_ONLY },
	{ "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	  RPC_BIDI_STREAM,
	  &grpc__reflection__v1alpha__server_reflection_request__descriptor,
	  handle_reflection, RPC_ANY_PRINCIPAL | RPC_AUDIT_DENIALS_ONLY },
};

size_t dispatch_n_methods =
    sizeof(dispatch_methods) / sizeof(dispatch_methods[0]);

/*
 * Upper bounds of request strings, checked on the wire before any handler
 * runs (reqcheck.h); handlers then apply the finer rules (the configured
 * consumer id length, name syntax, the schema's value rules).
 */
static const struct reqcheck_limit string_limits[] = {
	{ "consumer_id", 1024 },	/* max_consumer_id_bytes is at most this */
	{ "value", SCHEMA_VALUE_MAX },
	{ "page_token", 1024 },
	{ NULL, 0 },
};

const struct reqcheck_opts dispatch_strings = { string_limits, 256 };
