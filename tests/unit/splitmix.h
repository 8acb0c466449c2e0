/*
 * splitmix.h - the deterministic random numbers of the unit suites.
 *
 * A test that draws its workload from a generator must be able to draw the
 * same one again (to replay a failure, or to let a second thread or a
 * reference model regenerate what was written), and must not depend on
 * libc's rand. splitmix64 is small, fast and good enough for that; the
 * state is the caller's, so any number of independent streams can run at
 * once, one per thread.
 */
#ifndef MEMTRACE_TEST_SPLITMIX_H
#define MEMTRACE_TEST_SPLITMIX_H

#include <stddef.h>
#include <stdint.h>

struct rng {
	uint64_t s; /* the seed, then the state */
};

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for test workloads (n > 0). */
static inline size_t rng_below(struct rng *r, size_t n)
{
	return (size_t)(rng_next(r) % n);
}

#endif
