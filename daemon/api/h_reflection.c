/*
 * gRPC server reflection (grpc.reflection.v1alpha and v1, one protocol
 * under two names): what this server serves, described by the descriptors
 * protoc wrote at build time (reflect_index.h), so that grpcurl and
 * buf curl need no .proto files. It reveals the API, never data; who may
 * ask is the `reflection` setting (docs/security.md).
 *
 * The stream answers each request in order until the client half-closes.
 * A request the protocol can answer, even with "not found", gets an
 * error_response in the stream (the protocol's way), not a call status;
 * a request that is not a valid message ends the call (INVALID_ARGUMENT),
 * like any other call's.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "api/reflect_index.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest Request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse Response;
typedef Grpc__Reflection__V1alpha__ServiceResponse Service;

#define CASE(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define ANSWER(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* gRPC status codes, as the protocol's error_response carries them. */
#define CODE_INVALID_ARGUMENT 3
#define CODE_NOT_FOUND 5

#define MAX_SERVICES 32
#define MAX_SERVICE_NAME 128
#define MAX_FILES 32

/* The FileDescriptorSet of the build (cmake/embed.cmake). */
extern const unsigned char reflect_descriptor_set[];
extern const size_t reflect_descriptor_set_len;

/* Loaded once at start (reflection_configure), read-only after. */
static struct reflect_index *descriptors;
static int idle_ms;		/* a stream with no request this long: ended */

/* The reflection entries close the dispatch table. */
#define N_REFLECTION 2

int
reflection_configure(const char *mode, int idle_s, char *err, size_t errlen)
{
	struct rpc_method *m = &dispatch_methods[dispatch_n_methods - N_REFLECTION];
	static bool configured;
	int r;

	if (configured)
		abort();	/* the table would lose entries twice */
	configured = true;
	idle_ms = idle_s * 1000;
	if (strcmp(mode, "off") == 0) {
		dispatch_n_methods -= N_REFLECTION;
		return 0;
	}
	if ((r = reflect_index_load(&descriptors, reflect_descriptor_set,
	    reflect_descriptor_set_len)) != 0)
		return vault_errorf(err, errlen, r, "the descriptor set built "
		    "into vaultd for reflection cannot be read (%s); set "
		    "reflection = \"off\" or rebuild", vault_strerror(r));
	for (size_t i = 0; i < N_REFLECTION; i++)
		m[i].flags = strcmp(mode, "public") == 0 ? RPC_PUBLIC :
		    RPC_ANY_PRINCIPAL | RPC_AUDIT_DENIALS_ONLY;
	return 0;
}

static void
set_error(Response *resp, Grpc__Reflection__V1alpha__ErrorResponse *e,
    int code, const char *message)
{
	e->error_code = code;
	e->error_message = (char *)message;
	resp->message_response_case = ANSWER(ERROR_RESPONSE);
	resp->error_response = e;
}

/* The services of the dispatch table (so "off" lists none of its own). */
static int
list_services(struct rpc_ctx *ctx, Response *resp)
{
	char names[MAX_SERVICES][MAX_SERVICE_NAME];
	Grpc__Reflection__V1alpha__ListServiceResponse list =
	    GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
	Service services[MAX_SERVICES], *ptrs[MAX_SERVICES];
	size_t n = 0;

	for (size_t i = 0; i < dispatch_n_methods && n < MAX_SERVICES; i++) {
		const char *path = dispatch_methods[i].path + 1;
		size_t len = strcspn(path, "/");
		bool seen = false;

		snprintf(names[n], sizeof(names[n]), "%.*s", (int)len, path);
		for (size_t k = 0; k < n && !seen; k++)
			seen = strcmp(names[k], names[n]) == 0;
		if (seen)
			continue;
		grpc__reflection__v1alpha__service_response__init(&services[n]);
		services[n].name = names[n];
		ptrs[n] = &services[n];
		n++;
	}
	list.n_service = n;
	list.service = ptrs;
	resp->message_response_case = ANSWER(LIST_SERVICES_RESPONSE);
	resp->list_services_response = &list;
	return rpc_send(ctx, &resp->base);
}

/* A file and everything it imports, the file first. */
static int
send_file(struct rpc_ctx *ctx, Response *resp, int file)
{
	Grpc__Reflection__V1alpha__FileDescriptorResponse fd =
	    GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
	ProtobufCBinaryData bytes[MAX_FILES];
	int files[MAX_FILES];
	size_t n = reflect_closure(descriptors, file, files, MAX_FILES);

	for (size_t i = 0; i < n; i++) {
		const uint8_t *data;

		reflect_file_bytes(descriptors, files[i], &data, &bytes[i].len);
		bytes[i].data = (uint8_t *)data;
	}
	fd.n_file_descriptor_proto = n;
	fd.file_descriptor_proto = bytes;
	resp->message_response_case = ANSWER(FILE_DESCRIPTOR_RESPONSE);
	resp->file_descriptor_response = &fd;
	return rpc_send(ctx, &resp->base);
}

/* A message type exists: it has no extensions (vaultd defines none). */
static int
extension_numbers(struct rpc_ctx *ctx, Response *resp, const char *type)
{
	Grpc__Reflection__V1alpha__ExtensionNumberResponse numbers =
	    GRPC__REFLECTION__V1ALPHA__EXTENSION_NUMBER_RESPONSE__INIT;

	numbers.base_type_name = (char *)type;
	resp->message_response_case = ANSWER(ALL_EXTENSION_NUMBERS_RESPONSE);
	resp->all_extension_numbers_response = &numbers;
	return rpc_send(ctx, &resp->base);
}

/* One response for one request. Errors name no part of the request. */
static int
answer(struct rpc_ctx *ctx, const Request *req)
{
	Response resp = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
	Grpc__Reflection__V1alpha__ErrorResponse err =
	    GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
	enum reflect_kind kind;
	int file;

	resp.valid_host = req->host;
	resp.original_request = (Request *)req;
	switch (req->message_request_case) {
	case CASE(LIST_SERVICES):
		return list_services(ctx, &resp);
	case CASE(FILE_BY_FILENAME):
		if ((file = reflect_file_by_name(descriptors,
		    req->file_by_filename)) >= 0)
			return send_file(ctx, &resp, file);
		set_error(&resp, &err, CODE_NOT_FOUND, "file not found");
		break;
	case CASE(FILE_CONTAINING_SYMBOL):
		if ((file = reflect_file_by_symbol(descriptors,
		    req->file_containing_symbol, NULL)) >= 0)
			return send_file(ctx, &resp, file);
		set_error(&resp, &err, CODE_NOT_FOUND, "symbol not found");
		break;
	case CASE(FILE_CONTAINING_EXTENSION):
		set_error(&resp, &err, CODE_NOT_FOUND, "extension not found");
		break;
	case CASE(ALL_EXTENSION_NUMBERS_OF_TYPE):
		if (reflect_file_by_symbol(descriptors,
		    req->all_extension_numbers_of_type, &kind) >= 0 &&
		    kind == REFLECT_MESSAGE)
			return extension_numbers(ctx, &resp,
			    req->all_extension_numbers_of_type);
		set_error(&resp, &err, CODE_NOT_FOUND, "type not found");
		break;
	default:
		set_error(&resp, &err, CODE_INVALID_ARGUMENT, "the request sets "
		    "none of file_by_filename, file_containing_symbol, "
		    "file_containing_extension, all_extension_numbers_of_type, "
		    "list_services");
		break;
	}
	return rpc_send(ctx, &resp.base);
}

int
handle_reflection(struct rpc_ctx *ctx, const ProtobufCMessage *first)
{
	ProtobufCMessage *next = NULL;
	const ProtobufCMessage *req = first;
	int r;

	if (descriptors == NULL)	/* reflection_configure did not run */
		return rpc_fail(ctx, VAULT_ERR_UNIMPLEMENTED,
		    "reflection is not configured");
	while ((r = answer(ctx, (const Request *)req)) == 0) {
		rpc_msg_free(next);
		if ((r = rpc_recv(ctx, idle_ms, &next)) != 0 || next == NULL)
			break;
		req = next;
	}
	rpc_msg_free(next);
	return r;
}
