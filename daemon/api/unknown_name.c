/*
 * Refusals of a purpose or attribute name the schema does not have. The
 * purposes and attribute names are configuration, not secrets, so the
 * message lists them and suggests the closest; the name sent is never
 * echoed (a client that mixed up its fields may have sent a value there).
 */
#include <stdio.h>
#include <string.h>

#include "api/handlers.h"
#include "util/suggest.h"

/* The message's tail: "; did you mean 'x'? valid: a, b, c". */
static int
refuse(struct rpc_ctx *ctx, const char *field, const char *what,
    const char *sent, const char *const *names, size_t n)
{
	const char *close = suggest_closest(sent, names, n);
	char list[160], hint[SCHEMA_NAME_MAX + 24] = "";

	suggest_list(list, sizeof(list), names, n);
	if (close != NULL)
		snprintf(hint, sizeof(hint), "; did you mean '%s'?", close);
	return rpc_fail(ctx, VAULT_ERR_INVALID, "%s: unknown %s%s (the schema "
	    "has: %s)", field, what, hint, list);
}

int
handler_unknown_attr(struct rpc_ctx *ctx, const struct schema *s,
    const char *field, const char *sent)
{
	const char *names[SCHEMA_MAX_ATTRS];
	size_t n = 0;

	for (size_t i = 0; i < s->n_attrs && n < SCHEMA_MAX_ATTRS; i++)
		names[n++] = s->attrs[i].name;
	return refuse(ctx, field, "attribute", sent, names, n);
}

int
handler_unknown_purpose(struct rpc_ctx *ctx, const struct schema *s,
    const char *sent)
{
	const char *names[SCHEMA_MAX_ATTRS];
	size_t n = 0;

	for (size_t i = 0; i < s->n_purposes && n < SCHEMA_MAX_ATTRS; i++)
		names[n++] = s->purposes[i].name;
	return refuse(ctx, "purpose", "purpose", sent, names, n);
}
