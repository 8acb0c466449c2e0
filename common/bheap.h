/*
 * bheap.h - binary min-heap operations over an array the caller owns.
 *
 * The heap is the first n elements of the caller's array, each `size` bytes,
 * ordered by the caller's strict "less" with a context pointer, like qsort.
 * These functions only restore the heap order after the caller changed one
 * element: the caller appends and calls bheap_sift_up, or overwrites the root
 * (or moves the last element there and shrinks n) and calls bheap_sift_down.
 * Elements that compare equal keep the order the operations leave them in,
 * which is fixed: a parent moves only when a child is strictly less, and of
 * two equal children the left one rises.
 *
 * Everything is inline and nothing allocates, so the agent's sender uses it
 * inside the traced process as well as the daemon; always inlined, so that
 * the caller's `less` and the element size are known where they are used and
 * no call is left on the per-element path.
 */
#ifndef MEMTRACE_COMMON_BHEAP_H
#define MEMTRACE_COMMON_BHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define BHEAP_INLINE static inline __attribute__((always_inline))

/* Whether element a orders strictly before element b. */
typedef bool (*bheap_less_fn)(const void *a, const void *b, void *ctx);

BHEAP_INLINE void *bheap_at(void *base, size_t size, size_t i)
{
	return (unsigned char *)base + i * size;
}

BHEAP_INLINE void bheap_swap(void *a, void *b, size_t size)
{
	unsigned char t[32], *p = a, *q = b;

	while (size > 0) {
		size_t k = size < sizeof(t) ? size : sizeof(t);
		memcpy(t, p, k);
		memcpy(p, q, k);
		memcpy(q, t, k);
		p += k;
		q += k;
		size -= k;
	}
}

/* Element i may be less than its parent: moves it up to its place. */
BHEAP_INLINE void bheap_sift_up(void *base, size_t size, size_t i, bheap_less_fn less, void *ctx)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!less(bheap_at(base, size, i), bheap_at(base, size, parent), ctx))
			return;
		bheap_swap(bheap_at(base, size, i), bheap_at(base, size, parent), size);
		i = parent;
	}
}

/* Element i of the heap of n may be greater than a child: moves it down. */
BHEAP_INLINE void bheap_sift_down(void *base, size_t n, size_t size, size_t i, bheap_less_fn less,
                                  void *ctx)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && less(bheap_at(base, size, l), bheap_at(base, size, m), ctx))
			m = l;
		if (l + 1 < n && less(bheap_at(base, size, l + 1), bheap_at(base, size, m), ctx))
			m = l + 1;
		if (m == i)
			return;
		bheap_swap(bheap_at(base, size, i), bheap_at(base, size, m), size);
		i = m;
	}
}

/* Orders the first n elements of an arbitrary array as a heap, in O(n). */
BHEAP_INLINE void bheap_make(void *base, size_t n, size_t size, bheap_less_fn less, void *ctx)
{
	for (size_t i = n / 2; i-- > 0;)
		bheap_sift_down(base, n, size, i, less, ctx);
}

#endif
