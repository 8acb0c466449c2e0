/*
 * merge.h - the sender's k-way merge of the per-thread rings into one event
 * stream in global sequence order.
 *
 * One merge per sender cycle:
 *  1. merge_watermark: W = min(next_seq, every ring's pending). Every record
 *     with seq < W is already in some ring (ring.h); records at or above W
 *     may still have a smaller-numbered record in flight, so they wait.
 *  2. merge_collect: from each ring, the records from its tail up to the
 *     first one with seq >= W. A thread's sequence numbers increase along
 *     its ring, so that is exactly its records below W.
 *  3. merge_next, until it returns NULL: the collected records in sequence
 *     order, through a min-heap (bheap.h) of the segments on their next
 *     sequence number, O(log rings) per record.
 *  4. merge_release: the rings get the space of the merged records back and
 *     the threads blocked on a full ring are woken.
 *
 * The functions work on the ring list they are given and on the struct
 * merge, never on the agent's globals, a socket or a thread of their own, so
 * the unit tests drive them with hand-made rings. The segment arrays come
 * from sysdep_map, never from the allocator the agent interposes. Sender
 * thread only (or whoever stands in for it while it does not run).
 */
#ifndef MEMTRACE_AGENT_MERGE_H
#define MEMTRACE_AGENT_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"

/* The records of one ring being merged. */
struct merge_seg {
	struct ring *r;
	uint64_t pos, end; /* ring indexes [pos, end) not merged yet */
};

/* Zero-initialised it is an empty merge; merge_free gives its memory back. */
struct merge {
	struct merge_seg *seg; /* the rings that have records below W */
	uint32_t *heap;        /* indexes into seg: a min-heap on the next seq */
	size_t cap;            /* entries of seg and heap */
	size_t nseg;           /* segments collected */
	size_t live;           /* segments with records left: heap[0 .. live) */
};

/* The sequence watermark over the rings from head, next_seq being a value of
 * the global counter read before head was (a ring that registers after head
 * was read takes its first seq after that). */
uint64_t merge_watermark(struct ring *head, uint64_t next_seq);
/* Collects the records below w of every ring from head (free rings are
 * skipped) and starts merging them. 0, or -ENOMEM when the segment arrays
 * cannot grow (nothing is collected then). */
int merge_collect(struct merge *m, struct ring *head, uint64_t w);
/* The next record in sequence order, or NULL when all are merged. The record
 * stays valid, in its ring, until merge_release. */
const struct ring_ev *merge_next(struct merge *m);
/* Once merge_next returned NULL: every collected ring's tail moves past its
 * merged records, and its blocked writers are woken. */
void merge_release(struct merge *m);
void merge_free(struct merge *m);

#endif
