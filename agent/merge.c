/* merge.c - the k-way merge of the rings (see merge.h). */
#include "merge.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "bheap.h"
#include "sysdep.h"

static uint64_t next_seq(const struct merge_seg *s)
{
	return ring_ev_seq(&s->r->ev[s->pos & (RING_CAP - 1)]);
}

/* Heap order: the segment whose next record comes first. */
static bool seg_before(const void *a, const void *b, void *ctx)
{
	const struct merge_seg *seg = ctx;

	return next_seq(&seg[*(const uint32_t *)a]) < next_seq(&seg[*(const uint32_t *)b]);
}

/* Room for `want` segments; the arrays double. */
static int grow(struct merge *m, size_t want)
{
	if (want <= m->cap)
		return 0;
	size_t cap = m->cap ? m->cap * 2 : 256;
	while (cap < want)
		cap *= 2;
	struct merge_seg *seg = sysdep_map(cap * sizeof(*seg), 0);
	uint32_t *heap = sysdep_map(cap * sizeof(*heap), 0);
	if (seg == NULL || heap == NULL) {
		if (seg != NULL)
			sysdep_unmap(seg, cap * sizeof(*seg));
		if (heap != NULL)
			sysdep_unmap(heap, cap * sizeof(*heap));
		return -ENOMEM;
	}
	merge_free(m);
	m->seg = seg;
	m->heap = heap;
	m->cap = cap;
	return 0;
}

uint64_t merge_watermark(struct ring *head, uint64_t next_seq)
{
	uint64_t w = next_seq;

	for (struct ring *r = head; r != NULL; r = r->next) {
		uint64_t p = atomic_load(&r->pending);
		if (p < w)
			w = p;
	}
	return w;
}

int merge_collect(struct merge *m, struct ring *head, uint64_t w)
{
	size_t nrings = 0;

	m->nseg = 0;
	m->live = 0;
	/* Rings are pushed at the head: walking from one head twice sees the
	 * same rings, however many threads start meanwhile. */
	for (struct ring *r = head; r != NULL; r = r->next)
		nrings++;
	if (grow(m, nrings) < 0)
		return -ENOMEM;
	for (struct ring *r = head; r != NULL; r = r->next) {
		if (atomic_load(&r->state) == RING_FREE)
			continue;
		uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
		uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
		uint64_t e = t;
		while (e < h && ring_ev_seq(&r->ev[e & (RING_CAP - 1)]) < w)
			e++;
		if (e == t)
			continue;
		m->seg[m->nseg].r = r;
		m->seg[m->nseg].pos = t;
		m->seg[m->nseg].end = e;
		m->heap[m->nseg] = (uint32_t)m->nseg;
		m->nseg++;
	}
	m->live = m->nseg;
	bheap_make(m->heap, m->live, sizeof(*m->heap), seg_before, m->seg);
	return 0;
}

const struct ring_ev *merge_next(struct merge *m)
{
	if (m->live == 0)
		return NULL;
	struct merge_seg *s = &m->seg[m->heap[0]];
	const struct ring_ev *e = &s->r->ev[s->pos & (RING_CAP - 1)];
	if (++s->pos == s->end)
		m->heap[0] = m->heap[--m->live];
	if (m->live > 0)
		bheap_sift_down(m->heap, m->live, sizeof(*m->heap), 0, seg_before, m->seg);
	return e;
}

void merge_release(struct merge *m)
{
	for (size_t i = 0; i < m->nseg; i++) {
		struct ring *r = m->seg[i].r;
		atomic_store_explicit(&r->tail, m->seg[i].end, memory_order_release);
		atomic_store_explicit(&r->wake_sent, 0, memory_order_relaxed);
		atomic_fetch_add(&r->tail_futex, 1);
		if (atomic_load(&r->waiters))
			sysdep_futex_wake(&r->tail_futex, 64);
	}
	m->nseg = 0;
	m->live = 0;
}

void merge_free(struct merge *m)
{
	if (m->seg != NULL) {
		sysdep_unmap(m->seg, m->cap * sizeof(*m->seg));
		sysdep_unmap(m->heap, m->cap * sizeof(*m->heap));
	}
	m->seg = NULL;
	m->heap = NULL;
	m->cap = 0;
	m->nseg = 0;
	m->live = 0;
}
