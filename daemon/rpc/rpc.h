/*
 * What a handler sees of the RPC runtime. Handlers get a decoded protobuf-c
 * request, run on a worker thread (never a completion-queue thread; a
 * server or bidirectional stream on a thread of its own, counted against
 * stream caps), and answer through rpc_reply (unary) or rpc_send (streams);
 * a bidirectional stream reads its next requests with rpc_recv. No grpc_*
 * call appears outside daemon/rpc/.
 */
#ifndef VAULT_RPC_H
#define VAULT_RPC_H

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "conf/auth.h"
#include "util/vault_err.h"

struct rpc_ctx;

/*
 * RPC_BIDI_STREAM: the handler gets the first request message (a stream the
 * client closes before sending one is answered OK without it) and reads the
 * others with rpc_recv.
 */
enum rpc_kind { RPC_UNARY, RPC_SERVER_STREAM, RPC_BIDI_STREAM };

#define RPC_PUBLIC 0x1		/* no principal needed (health checks) */
#define RPC_AUDIT_DENIALS_ONLY 0x4	/* reads of the audit log itself */
/*
 * Any authenticated principal, whatever its roles: for what reveals no
 * data (server reflection, when configured so). Still denied without one.
 */
#define RPC_ANY_PRINCIPAL 0x8

/*
 * Returns 0 after rpc_reply (unary) or the last rpc_send (stream), or a vault
 * error, ideally set with rpc_fail so the caller gets a precise message.
 */
typedef int (*rpc_handler)(struct rpc_ctx *ctx, const ProtobufCMessage *req);

struct rpc_method {
	const char *path;		/* "/vault.v1.Consumers/PutAttributes" */
	enum rpc_kind kind;
	const ProtobufCMessageDescriptor *request;
	rpc_handler handler;		/* NULL: answered UNIMPLEMENTED */
	unsigned flags;
};

/*
 * What the audit log records of a call. The runtime fills principal, method
 * and outcome; handlers add what they know (rpc_audit_*). The entry is
 * written with the call's first write (atomically, in the same transaction),
 * else before the first stream message, else before the unary reply; if it
 * cannot be written, the call fails.
 */
struct rpc_audit {
	const char *principal, *method, *outcome;
	const uint8_t *refs;		/* n_refs consumer refs of 32 bytes */
	size_t n_refs;
	uint8_t ref[32];
	char detail[256], purpose[64], dataset[80];
	char names[512];		/* attribute names, comma-separated */
	char source[64];		/* SetConsent: the consent's source */
};

struct rpc_audit_sink {
	/* The next write of this thread carries rec (same transaction). */
	void (*arm)(void *app, const struct rpc_audit *rec);
	/* Ends that; true when rec was written with a write. */
	bool (*disarm)(void *app);
	/* Records rec now, before the reply; a failure refuses the call. */
	int (*append)(void *app, const struct rpc_audit *rec);
};

void rpc_audit_ref(struct rpc_ctx *ctx, const uint8_t ref[32]);
/* Takes refs (malloc'd, n * 32 bytes); freed when the call ends. */
void rpc_audit_refs(struct rpc_ctx *ctx, uint8_t *refs, size_t n);
void rpc_audit_detail(struct rpc_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void rpc_audit_purpose(struct rpc_ctx *ctx, const char *purpose);
void rpc_audit_dataset(struct rpc_ctx *ctx, const char *dataset);
/* Attribute names, comma-separated (cut to fit; see handler_audit_names). */
void rpc_audit_names(struct rpc_ctx *ctx, const char *names);
void rpc_audit_source(struct rpc_ctx *ctx, const char *source);

/* The unary response; call once. */
int rpc_reply(struct rpc_ctx *ctx, const ProtobufCMessage *msg) VAULT_WUR;

/*
 * Sends one stream message. Waits while the previous one is still in flight
 * (flow control); VAULT_ERR_CANCELLED once the client has gone or the
 * deadline has passed.
 */
int rpc_send(struct rpc_ctx *ctx, const ProtobufCMessage *msg) VAULT_WUR;

/*
 * rpc_send for a stream that holds something while it waits (a backup's
 * store snapshot): when the previous message is still in flight after
 * stall_ms, the client has stopped reading; the call is ended with
 * DEADLINE_EXCEEDED and VAULT_ERR_DEADLINE returned.
 */
int rpc_send_within(struct rpc_ctx *ctx, const ProtobufCMessage *msg,
    int stall_ms) VAULT_WUR;

/*
 * The next request message of a bidirectional stream, checked like the
 * first (decoded, every string through reqcheck.h): 0 with *msg set, 0 with
 * *msg NULL once the client has half-closed, or an error with its message
 * set: VAULT_ERR_INVALID for a malformed message, VAULT_ERR_DEADLINE when
 * none came within idle_ms or the deadline passed (the call is then ended),
 * VAULT_ERR_UNAVAILABLE once the server is stopping, VAULT_ERR_CANCELLED
 * once the client has gone. The caller owns *msg and frees it with
 * rpc_msg_free.
 */
int rpc_recv(struct rpc_ctx *ctx, int idle_ms, ProtobufCMessage **msg) VAULT_WUR;
/* Frees (wipes) a message of rpc_recv; NULL is fine. */
void rpc_msg_free(ProtobufCMessage *msg);

/* Records the caller-facing message for err and returns err. */
int rpc_fail(struct rpc_ctx *ctx, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The authenticated principal; NULL only for RPC_PUBLIC methods. */
const struct principal *rpc_principal(const struct rpc_ctx *ctx);
/* The application object given to server_start. */
void *rpc_app(const struct rpc_ctx *ctx);

/* True once the client cancelled, the deadline passed or the server stops hard. */
bool rpc_cancelled(struct rpc_ctx *ctx);
/* True once the server is shutting down. */
bool rpc_stopping(const struct rpc_ctx *ctx);
/* Waits up to timeout_ms for cancellation or shutdown. */
void rpc_wait(struct rpc_ctx *ctx, int timeout_ms);

#endif
