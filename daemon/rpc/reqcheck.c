/*
 * Request string checks on the wire form. The walk trusts nothing: it runs
 * after protobuf-c accepted the message, but it is written to stop cleanly
 * on any byte string (the unit test feeds it malformed ones).
 */
#include <stdio.h>
#include <string.h>

#include "rpc/reqcheck.h"
#include "util/utf8.h"
#include "util/pbwire.h"

#define MAX_DEPTH 16

struct walk {
	const struct reqcheck_opts *opts;
	char *msg;
	size_t msg_len;
	char path[160];
};

static int
walk_fail(struct walk *w, const char *fmt, const char *field)
{
	snprintf(w->msg, w->msg_len, fmt, field);
	return VAULT_ERR_INVALID;
}

static size_t
limit_of(const struct reqcheck_opts *o, const char *field)
{
	for (const struct reqcheck_limit *l = o->limits; l && l->field; l++)
		if (strcmp(l->field, field) == 0)
			return l->max_bytes ? l->max_bytes : o->default_max;
	return o->default_max;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d,
    const uint8_t *p, const uint8_t *end, int depth);

static int
check_field(struct walk *w, const ProtobufCFieldDescriptor *f,
    const uint8_t *val, size_t n, int depth)
{
	size_t plen = strlen(w->path);
	int r = 0;

	snprintf(w->path + plen, sizeof(w->path) - plen, "%s%s",
	    plen ? "." : "", f->name);
	if (f->type == PROTOBUF_C_TYPE_STRING) {
		if (n > limit_of(w->opts, f->name))
			r = walk_fail(w, "%s: too long", w->path);
		/* utf8_valid refuses a NUL too; this says which fault it is. */
		else if (memchr(val, 0, n) != NULL)
			r = walk_fail(w, "%s: contains a NUL character", w->path);
		else if (!utf8_valid(val, n))
			r = walk_fail(w, "%s: not valid UTF-8", w->path);
	} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		r = walk_message(w, f->descriptor, val, val + n, depth + 1);
	}
	w->path[plen] = '\0';
	return r;
}

static int
walk_message(struct walk *w, const ProtobufCMessageDescriptor *d,
    const uint8_t *p, const uint8_t *end, int depth)
{
	if (depth > MAX_DEPTH)
		return walk_fail(w, "%s: nested too deeply", w->path[0] ?
		    w->path : "the request");
	while (p < end) {
		uint64_t key, n;
		const ProtobufCFieldDescriptor *f;
		int r;

		if (!pbwire_varint(&p, end, &key) || key >> 3 == 0 ||
		    key >> 3 > UINT32_MAX)
			return walk_fail(w, "%s: malformed message", w->path[0] ?
			    w->path : "the request");
		switch (key & 7) {
		case 0:
			if (!pbwire_varint(&p, end, &n))
				return walk_fail(w, "%s: malformed message",
				    "the request");
			break;
		case 1:
		case 5: {
			size_t sz = (key & 7) == 1 ? 8 : 4;

			if ((size_t)(end - p) < sz)
				return walk_fail(w, "%s: malformed message",
				    "the request");
			p += sz;
			break;
		}
		case 2:
			if (!pbwire_varint(&p, end, &n) || n > (uint64_t)(end - p))
				return walk_fail(w, "%s: malformed message",
				    "the request");
			f = protobuf_c_message_descriptor_get_field(d,
			    (unsigned)(key >> 3));
			if (f != NULL && (r = check_field(w, f, p, (size_t)n,
			    depth)) != 0)
				return r;
			p += n;
			break;
		default:	/* groups: not part of proto3, refused */
			return walk_fail(w, "%s: malformed message", "the request");
		}
	}
	return 0;
}

int
reqcheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
    size_t len, const struct reqcheck_opts *opts, char *msg, size_t msg_len)
{
	struct walk w = { .opts = opts, .msg = msg, .msg_len = msg_len };

	return walk_message(&w, desc, buf, buf + len, 0);
}
