/*
 * A small C client for vaultd over gRPC C core. Every grpc_* call of the
 * client side lives in vault_client.c.
 */
#ifndef VAULT_CLIENT_H
#define VAULT_CLIENT_H

#include <protobuf-c/protobuf-c.h>

struct vc;

/* A call's outcome: code is a gRPC status code (0 = OK). */
struct vc_status {
	int code;
	char message[512];
};

/*
 * Opens a channel to addr (host:port), plaintext (development). token, when
 * not NULL, is sent as "authorization: Bearer <token>" on every call.
 */
int vc_open(struct vc **out, const char *addr, const char *token);
/*
 * The same over TLS: ca_pem verifies the server; cert_pem and key_pem (both
 * or neither) are the client certificate for mTLS.
 */
int vc_open_tls(struct vc **out, const char *addr, const char *token,
    const char *ca_pem, const char *cert_pem, const char *key_pem);
void vc_close(struct vc *vc);

/*
 * One unary call of method (full path). On OK, *resp holds the decoded
 * response (free with protobuf_c_message_free_unpacked). Returns st->code.
 */
int vc_unary(struct vc *vc, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    struct vc_status *st, int timeout_ms);

/*
 * A server-streaming call: on_msg gets each decoded message (owned by the
 * callee only for the call) and returns 0 to go on or non-zero to cancel.
 * Returns st->code (CANCELLED when on_msg stopped it).
 */
typedef int (*vc_on_msg)(const ProtobufCMessage *msg, void *arg);
int vc_stream(struct vc *vc, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, vc_on_msg on_msg, void *arg,
    struct vc_status *st, int timeout_ms);

/* Sends raw bytes as the request (tests of the server's decoding). */
int vc_unary_raw(struct vc *vc, const char *method, const void *req,
    size_t req_len, struct vc_status *st, int timeout_ms);

/* "OK", "INVALID_ARGUMENT", ... */
const char *vc_code_name(int code);

void vc_global_init(void);
void vc_global_shutdown(void);

#endif
