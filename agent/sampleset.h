/*
 * sampleset.h - the addresses of the sampled blocks that are live, so that in
 * sampled mode (MEMTRACE_SAMPLE) a free of a block that was never sampled
 * costs no event, no sequence number and no shared write.
 *
 * A sampled allocation adds its address (sampleset_add) before the program
 * gets the block; a free asks sampleset_take before the real free, which says
 * whether the address was sampled and forgets it. The daemon needs the frees
 * of sampled blocks only: an unsampled block it never saw.
 *
 * Two levels. A filter of SAMPLESET_FILTER bits, indexed by a hash of the
 * address (a bit is set while a live sampled address hashes to it; how many
 * do is counted beside, under the lock), is read with one relaxed load: 0
 * means the address is not in the set, the common answer, and the whole
 * cost of an unsampled free. Otherwise the exact set (an open-addressing table with
 * backward-shift deletion that doubles when half full) is searched under a
 * spin lock: only sampled allocations, their frees and the filter's false
 * positives take it (about live sampled blocks / SAMPLESET_FILTER of frees).
 *
 * Memory comes from mmap (the agent never calls malloc). When the table
 * cannot grow, the set overflows for good: sampleset_take then answers true
 * for every address, so every free is sent as before (the daemon ignores the
 * frees of blocks it never saw), never a sampled free lost. A forked child
 * inherits the set (its heap is its parent's) and resets the lock, which a
 * thread of the parent may have held.
 */
#ifndef MEMTRACE_SAMPLESET_H
#define MEMTRACE_SAMPLESET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAMPLESET_FILTER_BITS 17
#define SAMPLESET_FILTER      ((size_t)1 << SAMPLESET_FILTER_BITS) /* bits: 16 KiB */

/* The filter's bits, 64 a word (NULL until set up or when it could not
 * be); a bit is set while a sampled address of its slot is live. */
extern _Atomic uint64_t *g_sampleset_filter;

static inline size_t sampleset_slot(uintptr_t addr)
{
	return (size_t)(((uint64_t)addr * 0x9e3779b97f4a7c15ull) >> (64 - SAMPLESET_FILTER_BITS));
}

/* False when addr is surely not in the set: one relaxed load of a word
 * of a 16 KiB bitmap, which stays in the caches. */
static inline bool sampleset_maybe(uintptr_t addr)
{
	_Atomic uint64_t *f = __atomic_load_n(&g_sampleset_filter, __ATOMIC_RELAXED);
	size_t i = sampleset_slot(addr);
	return f == NULL ||
	       (atomic_load_explicit(&f[i / 64], memory_order_relaxed) >> (i % 64) & 1) != 0;
}

/* Maps the filter and a first table. 0 or -ENOMEM (then the set is
 * overflowed: every free is sent). */
int sampleset_init(void);
void sampleset_add(uintptr_t addr);
/* Whether addr was sampled (and is forgotten now); true for any address
 * once the set overflowed or when it was never set up. */
bool sampleset_take(uintptr_t addr);
/* In a forked child: the lock is free again. */
void sampleset_after_fork_child(void);
/* Sampled addresses held, and whether the set overflowed: for tests. */
size_t sampleset_count(void);
bool sampleset_overflowed(void);

#endif
