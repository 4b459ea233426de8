/*
 * The wiping allocator: requests and replies hold personal data in plain
 * memory, so their memory is wiped before it is given back.
 */
#ifndef VAULT_RPC_ALLOC_H
#define VAULT_RPC_ALLOC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* Decoded requests are unpacked with this, and freed with it. */
extern ProtobufCAllocator wiping_allocator;

/* Wipes and frees a byte buffer this runtime packed (raw, uncompressed). */
void wipe_byte_buffer(grpc_byte_buffer *bb);

#endif


