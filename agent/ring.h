/*
 * ring.h - per-thread event rings and the registry the sender drains.
 *
 * Each traced thread owns one single-producer single-consumer ring: the
 * thread appends fixed-size records, the agent's sender thread consumes them.
 * No lock is taken on the hot path; head and tail are atomics on separate
 * cache lines.
 *
 * Ordering across threads uses the global sequence number and `pending`:
 * before a thread takes a sequence number it publishes a lower bound of it in
 * ring->pending, and clears it (UINT64_MAX) once the record is in the ring.
 * The sender computes W = min(g_seq, every ring's pending); every record with
 * seq < W is then already in some ring, so the sender can merge all rings up
 * to W and send events in exact global order (see sender.c).
 *
 * Rings are mmap'd, never freed: a ring whose thread exited goes back to a
 * free list once drained and is reused by the next new thread. The registry
 * is a lock-free push-only list.
 */
#ifndef MEMTRACE_AGENT_RING_H
#define MEMTRACE_AGENT_RING_H

#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

#define RING_CAP 16384u /* records per thread */

struct ring_ev {
	uint64_t seq_kind; /* seq << PROTO_EV_KIND_BITS | enum proto_ev_kind, as on the wire */
	uint64_t addr;
	uint64_t size;
	uint32_t stack;
	uint32_t pad;
};

static inline uint64_t ring_ev_seq(const struct ring_ev *e)
{
	return e->seq_kind >> PROTO_EV_KIND_BITS;
}

static inline enum proto_ev_kind ring_ev_kind(const struct ring_ev *e)
{
	return (enum proto_ev_kind)(e->seq_kind & PROTO_EV_KIND_MASK);
}

enum ring_state {
	RING_LIVE = 1,    /* owned by a running thread */
	RING_RETIRED = 2, /* owner exited; drain, then free */
	RING_FREE = 3,    /* on the free list */
};

struct ring {
	_Alignas(64) _Atomic uint64_t head;    /* written by the producer */
	_Atomic uint32_t wake_sent;            /* producer asked the sender to run */
	_Alignas(64) _Atomic uint64_t tail;    /* written by the consumer */
	_Atomic uint32_t tail_futex;           /* bumped by the consumer after a drain */
	_Atomic uint32_t waiters;              /* producers blocked on a full ring */
	_Alignas(64) _Atomic uint64_t pending; /* lower bound of an in-flight seq, or MAX */
	_Atomic int state;
	pid_t tid;
	uint64_t idle_since;    /* sender: when the ring was last seen non-empty */
	struct ring *next;      /* registry */
	struct ring *free_next; /* free list */
	struct ring_ev ev[RING_CAP];
};

/* Head of the registry (all rings ever created). */
struct ring *ring_registry(void);
/* A ring for the calling thread: reused from the free list or new. */
struct ring *ring_acquire(pid_t tid);
/* The owner is gone: the sender frees it once drained. */
void ring_retire(struct ring *r);
/* Sender: put a drained retired ring back on the free list. */
void ring_release(struct ring *r);
/* Fork child: every ring but `mine` becomes free and empty; mine is emptied. */
void ring_reset_after_fork(struct ring *mine);

/* Producer side, inline for the hot path. */
static inline uint64_t ring_used(struct ring *r)
{
	return __atomic_load_n((uint64_t *)&r->head, __ATOMIC_RELAXED) -
	       __atomic_load_n((uint64_t *)&r->tail, __ATOMIC_ACQUIRE);
}

#endif
