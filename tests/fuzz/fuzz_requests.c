/*
 * Requests: the first byte chooses a method of the dispatch table (every
 * method of vault.proto, health too); the rest is its request message on
 * the wire, as the server takes it: protobuf-c unpack, then the central
 * string check (rpc/reqcheck.h). When both accept, every string a handler
 * would see must be within its limit and valid UTF-8, and the message must
 * pack and unpack again. The pure field checks the handlers call (consumer
 * id, request id, dataset id, consent source) run on the strings too.
 */
#include <string.h>

#include "api/handlers.h"
#include "engine/consent.h"
#include "engine/dataset.h"
#include "engine/deletion.h"
#include "util/utf8.h"
#include "fuzz_common.h"

/* dispatch.c names the handlers; the fuzzer never calls them. */
#define STUB(name)							\
	int name(struct rpc_ctx *ctx, const ProtobufCMessage *req)	\
	{ (void)ctx; (void)req; abort(); }
STUB(handle_put_attributes) STUB(handle_get_attributes) STUB(handle_set_consent)
STUB(handle_fetch_features) STUB(handle_get_feature_spec)
STUB(handle_delete_consumer) STUB(handle_delete_consumers)
STUB(handle_watch_deletions) STUB(handle_rotate_master_key)
STUB(handle_get_key_status) STUB(handle_destroy_master_key)
STUB(handle_rotate_consumer_key) STUB(handle_query_audit)
STUB(handle_verify_audit) STUB(handle_export_consumer)
STUB(handle_health_check) STUB(handle_health_watch)
STUB(handle_reflection)
STUB(handle_watch_consent) STUB(handle_audit_report)
STUB(handle_process_drop_list)
STUB(handle_backup) STUB(handle_export_deletions)

static size_t
limit_of(const char *field)
{
	const struct reqcheck_opts *o = &dispatch_strings;

	for (const struct reqcheck_limit *l = o->limits; l && l->field; l++)
		if (strcmp(l->field, field) == 0)
			return l->max_bytes ? l->max_bytes : o->default_max;
	return o->default_max;
}

/* What a handler would do first with a string of this name. */
static void
field_checks(const char *name, const char *s)
{
	size_t n = strlen(s);

	if (strcmp(name, "consumer_id") == 0 || strcmp(name, "consumer_ids") == 0)
		(void)schema_check_consumer_id(s, n, 1024);
	else if (strcmp(name, "request_id") == 0)
		(void)deletion_check_request_id(s);
	else if (strcmp(name, "dataset_id") == 0)
		(void)dataset_check_id(s);
	else if (strcmp(name, "source") == 0)
		(void)consent_check_source(s);
}

static void
check_string(const ProtobufCFieldDescriptor *f, const char *s)
{
	size_t n;

	if (s == NULL)
		return;
	n = strlen(s);
	FUZZ_CHECK(n <= limit_of(f->name));
	FUZZ_CHECK(utf8_valid((const uint8_t *)s, n));
	field_checks(f->name, s);
}

/* Every string of an accepted message, at any depth. */
static void
walk(const ProtobufCMessage *m, int depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	FUZZ_CHECK(depth <= 16);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *at = (const char *)m + f->offset;
		size_t count = 1;
		void *const *items = (void *const *)at;

		if (f->type != PROTOBUF_C_TYPE_STRING &&
		    f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)((const char *)m +
			    f->quantifier_offset) != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			count = *(const size_t *)((const char *)m +
			    f->quantifier_offset);
			items = *(void *const *const *)at;
		}
		for (size_t k = 0; k < count; k++) {
			if (f->type == PROTOBUF_C_TYPE_STRING)
				check_string(f, items[k]);
			else if (items[k] != NULL)
				walk(items[k], depth + 1);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct rpc_method *m;
	ProtobufCMessage *msg, *again;
	uint8_t *packed;
	size_t n;
	char why[256];
	int r;

	fuzz_init();
	if (size < 1)
		return 0;
	m = &dispatch_methods[data[0] % dispatch_n_methods];
	data++;
	size--;
	if ((msg = protobuf_c_message_unpack(m->request, NULL, size, data)) == NULL)
		return 0;
	why[0] = '\0';
	r = reqcheck_message(m->request, data, size, &dispatch_strings, why,
	    sizeof(why));
	FUZZ_CHECK(r == 0 || (r == VAULT_ERR_INVALID && why[0] != '\0'));
	FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
	if (r == 0) {
		walk(msg, 0);
		n = protobuf_c_message_get_packed_size(msg);
		if ((packed = malloc(n + 1)) == NULL)
			abort();
		FUZZ_CHECK(protobuf_c_message_pack(msg, packed) == n);
		again = protobuf_c_message_unpack(m->request, NULL, n, packed);
		FUZZ_CHECK(again != NULL);
		protobuf_c_message_free_unpacked(again, NULL);
		free(packed);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	return 0;
}
