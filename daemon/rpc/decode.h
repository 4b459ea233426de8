/*
 * A request message from the wire to a decoded, checked protobuf-c message:
 * the one way in for every request, the first of any call and the later
 * ones of a bidirectional stream alike.
 */
#ifndef VAULT_RPC_DECODE_H
#define VAULT_RPC_DECODE_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

struct rpc_ctx;

/*
 * Decodes bb as a request of c's method and checks every string of it
 * (reqcheck.h). Takes bb (destroyed here; its bytes wiped). Returns 0 with
 * *out set (free it with the wiping allocator), or VAULT_ERR_INVALID with
 * c's caller-facing message set and *out NULL.
 */
int decode_request(struct rpc_ctx *c, grpc_byte_buffer *bb,
    ProtobufCMessage **out);

#endif
