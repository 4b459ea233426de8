#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <sodium.h>

#include "vault_client.h"

struct vc {
	grpc_channel *ch;
	char *auth;		/* "Bearer <token>" or NULL */
};

void
vc_global_init(void)
{
	grpc_init();
}

void
vc_global_shutdown(void)
{
	grpc_shutdown();
}

static int
open_with(struct vc **out, const char *addr, const char *token,
    grpc_channel_credentials *creds)
{
	struct vc *vc;

	*out = NULL;
	if ((vc = calloc(1, sizeof(*vc))) == NULL)
		return -1;
	if (token != NULL && asprintf(&vc->auth, "Bearer %s", token) < 0) {
		free(vc);
		grpc_channel_credentials_release(creds);
		return -1;
	}
	vc->ch = grpc_channel_create(addr, creds, NULL);
	grpc_channel_credentials_release(creds);
	*out = vc;
	return 0;
}

int
vc_open(struct vc **out, const char *addr, const char *token)
{
	return open_with(out, addr, token, grpc_insecure_credentials_create());
}

int
vc_open_tls(struct vc **out, const char *addr, const char *token,
    const char *ca_pem, const char *cert_pem, const char *key_pem)
{
	grpc_ssl_pem_key_cert_pair pair = { key_pem, cert_pem };

	return open_with(out, addr, token, grpc_ssl_credentials_create(ca_pem,
	    cert_pem != NULL ? &pair : NULL, NULL, NULL));
}

void
vc_close(struct vc *vc)
{
	if (vc == NULL)
		return;
	grpc_channel_destroy(vc->ch);
	if (vc->auth != NULL) {
		sodium_memzero(vc->auth, strlen(vc->auth));
		free(vc->auth);
	}
	free(vc);
}

static const char *const code_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *
vc_code_name(int code)
{
	if (code < 0 || code >= (int)(sizeof(code_names) / sizeof(code_names[0])))
		return "UNKNOWN";
	return code_names[code];
}

/* One call's state, from creation to its status. */
struct vcall {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_slice path, details;
	grpc_byte_buffer *req;
	grpc_metadata md;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code code;
	bool has_md;
};

/* Creates the call; takes req (the serialized request). timeout_ms 0: none. */
static void
call_begin(struct vc *vc, const char *method, grpc_slice req, int timeout_ms,
    struct vcall *c)
{
	gpr_timespec deadline = timeout_ms > 0 ?
	    gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN)) :
	    gpr_inf_future(GPR_CLOCK_REALTIME);

	memset(c, 0, sizeof(*c));
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	c->path = grpc_slice_from_copied_string(method);
	c->details = grpc_empty_slice();
	c->code = GRPC_STATUS_UNKNOWN;
	c->req = grpc_raw_byte_buffer_create(&req, 1);
	grpc_slice_unref(req);		/* the byte buffer holds its own ref */
	grpc_metadata_array_init(&c->init_md);
	grpc_metadata_array_init(&c->trail_md);
	c->call = grpc_channel_create_call(vc->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
	    c->cq, c->path, NULL, deadline, NULL);
	if (vc->auth != NULL) {
		c->md.key = grpc_slice_from_static_string("authorization");
		c->md.value = grpc_slice_from_copied_string(vc->auth);
		c->has_md = true;
	}
}

/* The four opening ops: metadata, the request, half-close, server metadata. */
static size_t
call_open_ops(struct vcall *c, grpc_op *ops)
{
	memset(ops, 0, 4 * sizeof(*ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (c->has_md) {
		ops[0].data.send_initial_metadata.count = 1;
		ops[0].data.send_initial_metadata.metadata = &c->md;
	}
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = c->req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
	return 4;
}

static void
call_status_op(struct vcall *c, grpc_op *op)
{
	memset(op, 0, sizeof(*op));
	op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op->data.recv_status_on_client.status = &c->code;
	op->data.recv_status_on_client.status_details = &c->details;
	op->data.recv_status_on_client.trailing_metadata = &c->trail_md;
}

/* Runs one batch to completion on the call's pluck queue. */
static bool
run_batch(struct vcall *c, const grpc_op *ops, size_t n)
{
	grpc_event ev;

	if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK)
		return false;
	ev = grpc_completion_queue_pluck(c->cq, c, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Copies the status into st and frees everything of the call. */
static int
call_end(struct vcall *c, struct vc_status *st)
{
	size_t n = GRPC_SLICE_LENGTH(c->details);

	if (n >= sizeof(st->message))
		n = sizeof(st->message) - 1;
	memcpy(st->message, GRPC_SLICE_START_PTR(c->details), n);
	st->message[n] = '\0';
	st->code = (int)c->code;
	if (c->has_md)
		grpc_slice_unref(c->md.value);
	grpc_slice_unref(c->details);
	grpc_slice_unref(c->path);
	grpc_byte_buffer_destroy(c->req);
	grpc_metadata_array_destroy(&c->init_md);
	grpc_metadata_array_destroy(&c->trail_md);
	grpc_call_unref(c->call);
	grpc_completion_queue_shutdown(c->cq);
	while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(
	    GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(c->cq);
	return st->code;
}

static ProtobufCMessage *
unpack_bb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
	grpc_byte_buffer_reader reader;
	ProtobufCMessage *m;
	grpc_slice all;

	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
	    GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	return m;
}

/* One unary exchange of raw bytes; *resp_bb is set on OK. */
static int
exchange(struct vc *vc, const char *method, grpc_slice req,
    grpc_byte_buffer **resp_bb, struct vc_status *st, int timeout_ms)
{
	struct vcall c;
	grpc_op ops[6];
	size_t n;

	*resp_bb = NULL;
	call_begin(vc, method, req, timeout_ms, &c);
	n = call_open_ops(&c, ops);
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = resp_bb;
	call_status_op(&c, &ops[n++]);
	if (!run_batch(&c, ops, n) && c.code == GRPC_STATUS_UNKNOWN)
		c.code = GRPC_STATUS_INTERNAL;
	if (call_end(&c, st) != GRPC_STATUS_OK && *resp_bb != NULL) {
		grpc_byte_buffer_destroy(*resp_bb);
		*resp_bb = NULL;
	}
	return st->code;
}

int
vc_unary(struct vc *vc, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    struct vc_status *st, int timeout_ms)
{
	size_t n = protobuf_c_message_get_packed_size(req);
	grpc_slice s = grpc_slice_malloc(n);
	grpc_byte_buffer *bb = NULL;

	*resp = NULL;
	st->message[0] = '\0';
	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
	if (exchange(vc, method, s, &bb, st, timeout_ms) != 0)
		return st->code;
	if (bb != NULL)
		*resp = unpack_bb(bb, resp_desc);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
	if (*resp == NULL) {
		st->code = GRPC_STATUS_INTERNAL;
		snprintf(st->message, sizeof(st->message),
		    "the response is not a valid %s", resp_desc->name);
	}
	return st->code;
}

int
vc_unary_raw(struct vc *vc, const char *method, const void *req,
    size_t req_len, struct vc_status *st, int timeout_ms)
{
	grpc_slice s = grpc_slice_from_copied_buffer(req, req_len);
	grpc_byte_buffer *bb = NULL;

	st->message[0] = '\0';
	exchange(vc, method, s, &bb, st, timeout_ms);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
	return st->code;
}

int
vc_stream(struct vc *vc, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, vc_on_msg on_msg, void *arg,
    struct vc_status *st, int timeout_ms)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	grpc_slice body = grpc_slice_malloc(len);
	grpc_byte_buffer *resp_bb = NULL;
	struct vcall c;
	grpc_op ops[4];
	bool stopped = false;

	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(body));
	call_begin(vc, method, body, timeout_ms, &c);
	if (run_batch(&c, ops, call_open_ops(&c, ops))) {
		for (;;) {
			ProtobufCMessage *m;

			memset(ops, 0, sizeof(ops[0]));
			ops[0].op = GRPC_OP_RECV_MESSAGE;
			ops[0].data.recv_message.recv_message = &resp_bb;
			if (!run_batch(&c, ops, 1) || resp_bb == NULL)
				break;
			m = unpack_bb(resp_bb, resp_desc);
			grpc_byte_buffer_destroy(resp_bb);
			resp_bb = NULL;
			if (m == NULL || on_msg(m, arg) != 0) {
				if (m != NULL)
					protobuf_c_message_free_unpacked(m, NULL);
				stopped = true;
				grpc_call_cancel(c.call, NULL);
				break;
			}
			protobuf_c_message_free_unpacked(m, NULL);
		}
	}
	call_status_op(&c, &ops[0]);
	run_batch(&c, ops, 1);
	call_end(&c, st);
	if (stopped && st->code == GRPC_STATUS_OK)
		st->code = GRPC_STATUS_CANCELLED;
	return st->code;
}
