/*
 * The wiping allocator: protobuf-c's allocator for decoded requests, and
 * the release of the byte buffers this runtime packs, both wiped first.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "rpc/alloc.h"

/*
 * Decoded requests and packed replies hold personal data in plain memory:
 * both are wiped before their memory is given back. The allocator keeps
 * each block's size in front of it, since protobuf-c's free does not pass
 * one.
 */
#define WIPE_HDR 16

static void *
wipe_alloc(void *data, size_t n)
{
	uint8_t *p;

	(void)data;
	if (n > SIZE_MAX - WIPE_HDR || (p = malloc(n + WIPE_HDR)) == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + WIPE_HDR;
}

static void
wipe_free(void *data, void *ptr)
{
	uint8_t *p;
	size_t n;

	(void)data;
	if (ptr == NULL)
		return;
	p = (uint8_t *)ptr - WIPE_HDR;
	memcpy(&n, p, sizeof(n));
	sodium_memzero(p, n + WIPE_HDR);
	free(p);
}

ProtobufCAllocator wiping_allocator = { wipe_alloc, wipe_free, NULL };

/* Wipes and frees a byte buffer this runtime packed (raw, uncompressed). */
void
wipe_byte_buffer(grpc_byte_buffer *bb)
{
	if (bb == NULL)
		return;
	if (bb->type == GRPC_BB_RAW &&
	    bb->data.raw.compression == GRPC_COMPRESS_NONE) {
		grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;

		for (size_t i = 0; i < sb->count; i++)
			sodium_memzero(GRPC_SLICE_START_PTR(sb->slices[i]),
			    GRPC_SLICE_LENGTH(sb->slices[i]));
	}
	grpc_byte_buffer_destroy(bb);
}
