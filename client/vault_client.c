#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

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
		memset(vc->auth, 0, strlen(vc->auth));
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

/* One unary exchange of raw bytes; *resp_bb is set on OK. */
static int
exchange(struct vc *vc, const char *method, grpc_slice req_slice,
    grpc_byte_buffer **resp_bb, struct vc_status *st, int timeout_ms)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_slice path = grpc_slice_from_copied_string(method);
	grpc_byte_buffer *req_bb = grpc_raw_byte_buffer_create(&req_slice, 1);
	grpc_metadata_array init_md, trail_md;
	grpc_metadata md;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	grpc_call *call;
	grpc_event ev;
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	size_t n;

	*resp_bb = NULL;
	grpc_slice_unref(req_slice);	/* the byte buffer holds its own ref */
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	call = grpc_channel_create_call(vc->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    path, NULL, deadline, NULL);
	memset(ops, 0, sizeof(ops));
	memset(&md, 0, sizeof(md));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (vc->auth != NULL) {
		md.key = grpc_slice_from_static_string("authorization");
		md.value = grpc_slice_from_copied_string(vc->auth);
		ops[0].data.send_initial_metadata.count = 1;
		ops[0].data.send_initial_metadata.metadata = &md;
	}
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = resp_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.status = &code;
	ops[5].data.recv_status_on_client.status_details = &details;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
		code = GRPC_STATUS_INTERNAL;
		snprintf(st->message, sizeof(st->message), "cannot start the call");
	} else {
		ev = grpc_completion_queue_pluck(cq, call,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		(void)ev;
		n = GRPC_SLICE_LENGTH(details);
		if (n >= sizeof(st->message))
			n = sizeof(st->message) - 1;
		memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
		st->message[n] = '\0';
	}
	st->code = (int)code;
	if (code != GRPC_STATUS_OK && *resp_bb != NULL) {
		grpc_byte_buffer_destroy(*resp_bb);
		*resp_bb = NULL;
	}
	if (vc->auth != NULL)
		grpc_slice_unref(md.value);
	grpc_slice_unref(details);
	grpc_slice_unref(path);
	grpc_byte_buffer_destroy(req_bb);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(
	    GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
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
	grpc_byte_buffer_reader reader;
	grpc_slice all;

	*resp = NULL;
	st->message[0] = '\0';
	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
	if (exchange(vc, method, s, &bb, st, timeout_ms) != 0)
		return st->code;
	if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb)) {
		st->code = GRPC_STATUS_INTERNAL;
		snprintf(st->message, sizeof(st->message), "no response message");
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		return st->code;
	}
	all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	grpc_byte_buffer_destroy(bb);
	*resp = protobuf_c_message_unpack(resp_desc, NULL, GRPC_SLICE_LENGTH(all),
	    GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
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

/* Runs one batch to completion on the call's pluck queue. */
static bool
run_batch(grpc_completion_queue *cq, grpc_call *call, const grpc_op *ops,
    size_t n, void *tag)
{
	grpc_event ev;

	if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
		return false;
	ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
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

int
vc_stream(struct vc *vc, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, vc_on_msg on_msg, void *arg,
    struct vc_status *st, int timeout_ms)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_slice path = grpc_slice_from_copied_string(method);
	size_t len = protobuf_c_message_get_packed_size(req), n;
	grpc_slice body = grpc_slice_malloc(len);
	grpc_byte_buffer *req_bb, *resp_bb = NULL;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_metadata md;
	grpc_op ops[4];
	grpc_call *call;
	bool stopped = false;
	gpr_timespec deadline = timeout_ms > 0 ?
	    gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN)) :
	    gpr_inf_future(GPR_CLOCK_REALTIME);

	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(body));
	req_bb = grpc_raw_byte_buffer_create(&body, 1);
	grpc_slice_unref(body);
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	call = grpc_channel_create_call(vc->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    path, NULL, deadline, NULL);
	memset(ops, 0, sizeof(ops));
	memset(&md, 0, sizeof(md));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (vc->auth != NULL) {
		md.key = grpc_slice_from_static_string("authorization");
		md.value = grpc_slice_from_copied_string(vc->auth);
		ops[0].data.send_initial_metadata.count = 1;
		ops[0].data.send_initial_metadata.metadata = &md;
	}
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	if (run_batch(cq, call, ops, 4, (void *)1)) {
		for (;;) {
			ProtobufCMessage *m;

			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_RECV_MESSAGE;
			ops[0].data.recv_message.recv_message = &resp_bb;
			if (!run_batch(cq, call, ops, 1, (void *)2) || resp_bb == NULL)
				break;
			m = unpack_bb(resp_bb, resp_desc);
			grpc_byte_buffer_destroy(resp_bb);
			resp_bb = NULL;
			if (m == NULL || on_msg(m, arg) != 0) {
				if (m != NULL)
					protobuf_c_message_free_unpacked(m, NULL);
				stopped = true;
				grpc_call_cancel(call, NULL);
				break;
			}
			protobuf_c_message_free_unpacked(m, NULL);
		}
	}
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.status = &code;
	ops[0].data.recv_status_on_client.status_details = &details;
	ops[0].data.recv_status_on_client.trailing_metadata = &trail_md;
	run_batch(cq, call, ops, 1, (void *)3);
	st->code = stopped && code == GRPC_STATUS_OK ? GRPC_STATUS_CANCELLED : (int)code;
	n = GRPC_SLICE_LENGTH(details);
	if (n >= sizeof(st->message))
		n = sizeof(st->message) - 1;
	memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
	st->message[n] = '\0';
	if (vc->auth != NULL)
		grpc_slice_unref(md.value);
	grpc_slice_unref(details);
	grpc_slice_unref(path);
	grpc_byte_buffer_destroy(req_bb);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(
	    GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return st->code;
}
