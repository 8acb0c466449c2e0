/*
 * sampling.h - what one sampled allocation stands for, and the fixed-point
 * figures the heap keeps its estimates in.
 *
 * With MEMTRACE_SAMPLE=R the agent samples each byte a thread allocates
 * with probability 1/R, independently of every other byte (the gaps between
 * sampled bytes are exponential with mean R), and records a block when at
 * least one of its bytes was sampled, at its true size. A block of S bytes
 * is therefore recorded with probability p = 1 - exp(-S/R). Weighing each
 * recorded block as S/p bytes and 1/p blocks makes the sums over recorded
 * blocks unbiased estimates of the true bytes and blocks, whatever the mix
 * of sizes (the Horvitz-Thompson estimator; heapprofd and tcmalloc weigh
 * their samples the same way). A block of 40 R or more is recorded for
 * certain (p is 1 in a double) and weighs exactly its size and one block.
 *
 * Weights are fixed-point: whole units and a fraction in 2^-32 units, so
 * that 1/p between 1 and 2 (blocks near and above the rate) is not rounded
 * to one block. sampling_weight is a pure function of (size, rate), so the
 * heap computes it again from the size it kept when the block is freed and
 * subtracts exactly what it added. Without sampling (rate 0) a block weighs
 * its size and one block, with no fraction.
 *
 * A figure (bytes, blocks) is kept as its value rounded to the nearest
 * integer, which everybody reads as before, beside its exact fraction,
 * which only sampling_add and sampling_sub touch; both zero is the value 0.
 *
 * Pure functions: any thread. Nothing here allocates.
 */
#ifndef MEMTRACE_SAMPLING_H
#define MEMTRACE_SAMPLING_H

#include <stdint.h>

#define SAMPLING_HALF (UINT32_C(1) << 31) /* one half, in fraction units */

/* whole + frac / 2^32 */
struct sampling_value {
	uint64_t whole;
	uint32_t frac;
};

struct sampling_weight {
	struct sampling_value bytes; /* size / p */
	struct sampling_value count; /* 1 / p */
};

/* The weight of a recorded block of `size` bytes under sampling every
 * `rate` bytes on average (0 = every allocation is recorded). A size of 0
 * (which sampling never records) weighs 0 bytes and one block; a weight past
 * 2^64 saturates. */
void sampling_weight_sampled(uint64_t size, uint64_t rate, struct sampling_weight *w);
static inline void sampling_weight(uint64_t size, uint64_t rate, struct sampling_weight *w)
{
	if (rate == 0) {
		/* Every allocation recorded: inline, as the daemon weighs each. */
		w->bytes = (struct sampling_value){size, 0};
		w->count = (struct sampling_value){1, 0};
		return;
	}
	sampling_weight_sampled(size, rate, w);
}

/* Adds v to the figure kept as (*rounded, *frac): *rounded is the exact
 * value rounded half up, *frac its fraction. Arithmetic is modulo 2^64 in
 * whole units, so an add and the same sub cancel exactly whatever the order
 * of the operations between them. */
static inline void sampling_add(uint64_t *rounded, uint32_t *frac, struct sampling_value v)
{
	uint64_t whole = *rounded - (*frac >= SAMPLING_HALF);
	uint32_t f = *frac + v.frac;

	whole += v.whole + (f < v.frac); /* the carry out of the fraction */
	*frac = f;
	*rounded = whole + (f >= SAMPLING_HALF);
}

static inline void sampling_sub(uint64_t *rounded, uint32_t *frac, struct sampling_value v)
{
	uint64_t whole = *rounded - (*frac >= SAMPLING_HALF);
	uint32_t f = *frac - v.frac;

	whole -= v.whole + (*frac < v.frac); /* the borrow */
	*frac = f;
	*rounded = whole + (f >= SAMPLING_HALF);
}

#endif
