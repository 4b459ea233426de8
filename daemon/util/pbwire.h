/*
 * The protobuf wire format's base-128 varint, for the two places that walk
 * raw protobuf bytes: the request string check (rpc/reqcheck.c) and the
 * reflection index over the embedded descriptors (api/reflect_index.c).
 */
#ifndef VAULT_PBWIRE_H
#define VAULT_PBWIRE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Reads a varint at *p (never past end) into *out and moves *p past it.
 * False when it runs past end or past ten bytes.
 */
static inline bool
pbwire_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

#endif
