/*
 * Receipts, the daemon's side (engine/receipt.h): receipt_parse reads the
 * canonical text of a stored receipt (the requests record after its
 * header) when a request id comes again. Whatever the bytes, it must stay
 * within them and within the receipt's fields, and leave nothing behind
 * that receipt_clear does not free.
 */
#include <string.h>

#include "engine/receipt.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct receipt r;
	uint8_t *copy;

	fuzz_init();
	/* An exact-size copy: ASan sees any read past the record. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		abort();
	if (size > 0)
		memcpy(copy, data, size);
	memset(&r, 0, sizeof(r));
	if (receipt_parse(copy, size, &r) == 0) {
		FUZZ_CHECK(strlen(r.request_id) < sizeof(r.request_id));
		FUZZ_CHECK(strlen(r.ref_hex) < sizeof(r.ref_hex));
		FUZZ_CHECK(strlen(r.audit_head) < sizeof(r.audit_head));
		for (size_t i = 0; i < r.n_datasets; i++)
			FUZZ_CHECK(r.datasets[i] != NULL && r.datasets[i][0] != '\0');
	}
	receipt_clear(&r);
	free(copy);
	return 0;
}
