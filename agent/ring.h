/*
 * ring.h - per-thread event rings, in the shared region (proto/shm.h).
 *
 * Each traced thread owns one single-producer single-consumer ring: the
 * thread appends fixed-size records, memtraced consumes them (it reads the
 * shared memory itself). No lock is taken on the hot path; head and tail are
 * atomics on separate cache lines.
 *
 * Ordering across threads uses the global sequence number (g_shm->seq) and
 * `pending`: before a thread takes a sequence number it publishes a lower
 * bound of it in ring->pending, and clears it (UINT64_MAX) once the record is
 * in the ring. The daemon computes W = min(seq, every ring's pending); every
 * record with seq < W is then already in some ring, so it merges all rings up
 * to W in exact global order.
 *
 * Ring slots are handed out in order (g_shm->nrings counts them) and never
 * given back to the region: a ring whose thread exited returns to a private
 * free list once the daemon drained it, and the next new thread reuses it.
 */
#ifndef MEMTRACE_AGENT_RING_H
#define MEMTRACE_AGENT_RING_H

#include <stdint.h>
#include <sys/types.h>

#include "proto.h"
#include "shm.h"

#define RING_CAP SHM_RING_CAP

/* The process's shared region (region.h makes it): NULL until it exists.
 * Defined with the rings, which live in it. */
extern struct shm_header *g_shm;
extern char *g_region; /* the mapping: g_shm == (void *)g_region */

static inline uint64_t ring_ev_seq(const struct shm_ev *e)
{
	return e->seq_kind >> PROTO_EV_KIND_BITS;
}

static inline enum proto_ev_kind ring_ev_kind(const struct shm_ev *e)
{
	return (enum proto_ev_kind)(e->seq_kind & PROTO_EV_KIND_MASK);
}

enum ring_state {
	RING_LIVE = 1,    /* owned by a running thread */
	RING_RETIRED = 2, /* owner exited; reclaim once drained */
	RING_FREE = 3,    /* on the free list */
};

/* Rings handed out so far in the region at `hdr`, and the i-th of them. */
uint32_t ring_count(void);
struct shm_ring *ring_at(uint32_t i);
/* A ring for the calling thread: reused from the free list or new; NULL when
 * every slot is taken (the thread's events are then counted lost). */
struct shm_ring *ring_acquire(pid_t tid);
/* The owner is gone: the sender reclaims it once drained. */
void ring_retire(struct shm_ring *r);
/* Sender: the rings that are empty, retired or of a thread that is gone,
 * go back to the free list. `check_alive` asks the kernel about threads
 * whose ring was idle for `idle_ns`. */
void ring_reclaim(uint64_t now, int check_alive, uint64_t idle_ns, pid_t pid);
/* A fresh region (a fork child's, or a new session's after a detach): no
 * ring is in use, none free. Only one thread may be in the agent (the fork
 * child's), or none records (a new session starting). */
void ring_reset_after_fork(void);

static inline uint64_t ring_used(struct shm_ring *r)
{
	return __atomic_load_n((uint64_t *)&r->head, __ATOMIC_RELAXED) -
	       __atomic_load_n((uint64_t *)&r->tail, __ATOMIC_ACQUIRE);
}

#endif
