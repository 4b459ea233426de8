/*
 * RPC handlers: decode-level checks and the call into the engine. Each takes
 * the decoded request and answers through rpc.h.
 */
#ifndef VAULT_HANDLERS_H
#define VAULT_HANDLERS_H

#include <stddef.h>

#include "crypto/crypto.h"
#include "rpc/reqcheck.h"
#include "rpc/rpc.h"
#include "conf/schema.h"

int handle_put_attributes(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_get_attributes(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_set_consent(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_fetch_features(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_get_feature_spec(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_delete_consumer(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_delete_consumers(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_watch_deletions(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_process_drop_list(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_watch_consent(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_audit_report(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_rotate_master_key(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_get_key_status(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_destroy_master_key(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_rotate_consumer_key(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_query_audit(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_verify_audit(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_export_consumer(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_backup(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_export_deletions(struct rpc_ctx *ctx, const ProtobufCMessage *req);
extern const struct rpc_audit_sink audit_sink;
int handle_health_check(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_health_watch(struct rpc_ctx *ctx, const ProtobufCMessage *req);
int handle_reflection(struct rpc_ctx *ctx, const ProtobufCMessage *req);

/*
 * Applies the `reflection` setting ("authenticated", "public" or "off") to
 * the dispatch table and loads the descriptors it serves: once, at start,
 * before the table is read (policy loading, server_bind). A stream that
 * sends no request for idle_s seconds is ended.
 */
int reflection_configure(const char *mode, int idle_s, char *err,
    size_t errlen) VAULT_WUR;

/*
 * The dispatch table: every method of the contract. Written only by
 * reflection_configure, before the server starts.
 */
extern struct rpc_method dispatch_methods[];
extern size_t dispatch_n_methods;
extern const struct reqcheck_opts dispatch_strings;

/*
 * Checks a consumer id field and turns it into the consumer's ref, which
 * the call's audit entry records: 0, or VAULT_ERR_INVALID with the message
 * set. The one place an id becomes a ref: below the API layer, the engine
 * takes refs, and no plaintext id goes further than the handler.
 */
int handler_consumer_ref(struct rpc_ctx *ctx, const char *id,
    uint8_t ref[CRYPTO_REF_BYTES]);
/* Records the attribute names of a call in its audit entry (whole names
 * only, as many as fit). */
void handler_audit_names(struct rpc_ctx *ctx, const struct schema *s,
    const int *idx, size_t n);

/* Checks a purpose field (required, configured, allowed for the caller). */
int handler_check_purpose(struct rpc_ctx *ctx, const char *purpose, int *idx);

/*
 * Refuse a name the schema lacks (VAULT_ERR_INVALID): the message names the
 * field, suggests the closest known name and lists the known ones; the name
 * sent is never echoed (unknown_name.c).
 */
int handler_unknown_attr(struct rpc_ctx *ctx, const struct schema *s,
    const char *field, const char *sent);
int handler_unknown_purpose(struct rpc_ctx *ctx, const struct schema *s,
    const char *sent);

#endif
