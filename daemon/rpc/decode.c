/*
 * Request decoding (decode.h). protobuf-c forgets a string's wire length,
 * so the string check runs on the wire bytes, before they are wiped.
 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <sodium.h>

#include "rpc/alloc.h"
#include "rpc/decode.h"
#include "rpc/internal.h"
#include "rpc/reqcheck.h"

int
decode_request(struct rpc_ctx *c, grpc_byte_buffer *bb, ProtobufCMessage **out)
{
	grpc_byte_buffer_reader reader;
	grpc_slice s;
	int r;

	*out = NULL;
	if (!grpc_byte_buffer_reader_init(&reader, bb)) {
		grpc_byte_buffer_destroy(bb);
		return rpc_fail(c, VAULT_ERR_INVALID,
		    "the request message cannot be read");
	}
	s = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	rpc_stats_bytes_in(c->srv->stats, call_slot(c), GRPC_SLICE_LENGTH(s));
	/* Its slices may share memory with the transport's: freed, not wiped. */
	grpc_byte_buffer_destroy(bb);
	*out = protobuf_c_message_unpack(c->m->request, &wiping_allocator,
	    GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	if (*out == NULL) {
		r = rpc_fail(c, VAULT_ERR_INVALID,
		    "the request is not a valid %s message", c->m->request->name);
	} else {
		/* Every string of every request, before any handler sees it. */
		r = reqcheck_message(c->m->request, GRPC_SLICE_START_PTR(s),
		    GRPC_SLICE_LENGTH(s), c->srv->strings, c->errmsg,
		    sizeof(c->errmsg));
	}
	sodium_memzero(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
	grpc_slice_unref(s);
	if (r != 0 && *out != NULL) {
		protobuf_c_message_free_unpacked(*out, &wiping_allocator);
		*out = NULL;
	}
	return r;
}
