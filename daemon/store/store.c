/* The encodings and the clock of store.h: the same for every backend. */
#include <time.h>

#include "store/store.h"

static int64_t clock_shift_ms;

uint64_t
store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)((int64_t)ts.tv_sec * 1000 +
	    (int64_t)ts.tv_nsec / 1000000 + clock_shift_ms);
}

void
store_clock_shift(int64_t ms)
{
	clock_shift_ms = ms;
}

void
store_put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void
store_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint32_t
store_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

uint64_t
store_get_u64(const uint8_t *p)
{
	return (uint64_t)store_get_u32(p) << 32 | store_get_u32(p + 4);
}
