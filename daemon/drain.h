/*
 * drain.h - reading a traced process's shared region (proto/shm.h) into its
 * heap model.
 *
 * The agent passes its region's memfd with HELLO; drain_open checks that it
 * is a memfd that cannot shrink or grow and is of the layout's size (so no
 * access can fault), and maps it. drain_run then does what the agent's own
 * sender thread did before the region was shared: it computes the watermark
 * W = min(seq, every ring's pending), takes from each ring the records below
 * W, merges them in sequence order (a binary heap over the rings, O(log
 * rings) per record), defines each stack the first time a record names it
 * (reading its frames from the region's stack table) and applies the records
 * to the heap (a FORK record calls on_fork, with the heap as it is at the
 * fork); then it gives the rings their space back (tail) and wakes the
 * threads waiting for it. After the process is gone (drain_run with `final`)
 * nothing is in flight any more, and every record in the rings is taken.
 *
 * The memory is hostile: another user's process may write anything into it
 * at any moment. The header, records and stacks are copied out with pread
 * before they are looked at (pread never faults and never allocates the
 * memfd's holes), the rings' control fields are read once each through the
 * mapping (docs/DESIGN.md, "Hostile memory", says what that costs), every count
 * and index is checked against the layout's constants, and sequence numbers
 * must rise along each ring and across the merge. A region that breaks a rule
 * ends its session with the reason; it cannot make the daemon read or write
 * outside the region, loop, or allocate more than the layout's bounds. The
 * only writes are each ring's tail, tail_futex and wake_sent, through the
 * mapping.
 *
 * Loop thread only.
 */
#ifndef MEMTRACE_DRAIN_H
#define MEMTRACE_DRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"
#include "shm.h"

struct drain_seg;

/* Memory a drain works in: the records of one round and the rings' merge
 * state. The daemon gives all its sessions one (a drain never runs inside
 * another), so it costs one budget's worth (8 MiB at most), not one per
 * traced process; a drain without one uses its own. */
struct drain_scratch {
	struct shm_ev *recs;
	uint32_t *pair; /* per record: its temporary's other half (drain.c) */
	size_t recs_cap;
	size_t recs_peak; /* records held at once since the last trim */
	struct drain_seg *seg;
	uint32_t *order;
	size_t seg_cap;
};

struct drain {
	int fd;           /* the memfd, -1 when closed */
	char *map;        /* shared mapping: the rings' control fields (drain.c) */
	uint64_t seq;     /* the header's seq at the last drain */
	uint64_t lost;    /* the agent's lost count, as last read (never goes down) */
	uint64_t nostack; /* records the agent made without a stack */
	/* What of `lost` were allocations (of lost_bytes in all) and frees, as
	 * last read (never go down); gave_up: lossless mode stopped waiting. */
	uint64_t lost_allocs, lost_bytes, lost_frees;
	bool gave_up;
	bool exiting; /* the agent said it exits cleanly */
	bool behind;  /* the last drain left records to read (or in flight) */
	bool cut;     /* the last drain stopped for time with records left */
	/* What the last drain found as it began (yield.h's pressure): the
	 * records of its fullest ring, and whether a thread waited for room
	 * in one (the agent's word: it may lie, and gains nothing by it). */
	uint64_t fullest;
	bool waiting;
	uint32_t nrings; /* rings the region said it had handed out, at the last drain */
	/* Apply every record on its own, pairing no temporaries: for the
	 * tests that compare the two. */
	bool no_pairs;
	/* Pair, but apply every pair the general way, not the short one
	 * (heap_temp_alloc_fast): for the test that compares the two. */
	bool no_fast;
	uint64_t temporaries;      /* allocations applied as temporaries */
	uint64_t temporaries_kept; /* of them, given a slot: the round ended first */
	size_t fused_open;         /* counted pairs applied at once whose FREE is still to come */
	/* Called at a FORK record, once every record before it is applied:
	 * the heap is then the forked child's as it starts. Set after
	 * drain_open (which clears the struct); NULL ignores FORK records. */
	void (*on_fork)(void *arg, uint64_t seq);
	void *fork_arg;
	/* Scratch: the daemon's shared one (set after drain_open), else own. */
	struct drain_scratch *scratch;
	struct drain_scratch own;
	uint64_t final_taken; /* records taken by final drains (bounded) */
};

/* Takes fd (closed on failure too). 0, or -errno with a reason in why. */
int drain_open(struct drain *dr, int fd, const char **why);
void drain_close(struct drain *dr);
/* drain_close, but the memfd is returned (or -1) for the caller to close:
 * the last close of a region whose process is gone frees all its pages,
 * hundreds of MiB for a full one, which the loop should not wait for. */
int drain_release(struct drain *dr);
/* Bytes of scratch memory the drain holds of its own. */
size_t drain_memory(const struct drain *dr);
size_t drain_scratch_memory(const struct drain_scratch *sc);
void drain_scratch_free(struct drain_scratch *sc);
/* Whether the region has anything new since the last drain (one pread). */
bool drain_pending(struct drain *dr);
/* Applies the records below the watermark (every record when `final`: the
 * process is gone) to h. Returns the number of records applied, or -EBADMSG
 * with a reason in why (the region broke a rule; what was applied stays). */
long drain_run(struct drain *dr, struct heap *h, bool final, const char **why);
/* drain_run for at most until deadline_ns (CLOCK_MONOTONIC; 0: no time
 * bound), so that no region, however full or hostile, holds the loop for
 * longer: what is left sets `behind`, and the next call goes on from there.
 * Final drains together take at most the rings' capacity of records (a
 * process that keeps writing after its connection closed cannot keep the
 * daemon reading): past it `behind` stays false and the rest is ignored. */
long drain_run_until(struct drain *dr, struct heap *h, bool final, uint64_t deadline_ns,
                     const char **why);
/* CLOCK_MONOTONIC in ns: the clock of the deadlines. */
uint64_t drain_now_ns(void);

#endif
