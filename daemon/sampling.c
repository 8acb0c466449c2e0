/* sampling.c - the weight of a sampled block (see sampling.h). */
#include "sampling.h"

#include <math.h>

/* From 40 rates up exp(-size/rate) is below 2^-57, so 1 - exp(...) is 1 in
 * a double: the block was recorded for certain. Deciding that in integers
 * also keeps sizes past 2^53, which a double cannot hold, exact. */
#define SURE_RATES 40

static struct sampling_value value_of(double v)
{
	struct sampling_value r = {UINT64_MAX, 0};

	/* 2^64 is exact in a double; a weight that large is saturated
	 * rather than converted, which would be undefined. */
	if (!(v < 18446744073709551616.0))
		return r;
	r.whole = (uint64_t)v;
	/* v - whole is exact (whole is v's integer part, and below 2^53
	 * the fraction bits are all v has); scaling by 2^32 is exact too,
	 * and truncating it loses less than 2^-32. */
	r.frac = (uint32_t)((v - (double)r.whole) * 4294967296.0);
	return r;
}

void sampling_weight_sampled(uint64_t size, uint64_t rate, struct sampling_weight *w)
{
	if (size == 0 || size / SURE_RATES >= rate) {
		w->bytes = (struct sampling_value){size, 0};
		w->count = (struct sampling_value){1, 0};
		return;
	}
	double s = (double)size;
	/* expm1 keeps p's precision when size is far below the rate, where
	 * 1 - exp(x) would cancel to a few digits. */
	double p = -expm1(-s / (double)rate);
	w->bytes = value_of(s / p);
	w->count = value_of(1.0 / p);
}
