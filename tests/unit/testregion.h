/*
 * testregion.h - a real shared region (proto/shm.h) for the suites and fuzz
 * targets that play the agent's side of it.
 *
 * The region is made the way agent/region.c makes it: a memfd of SHM_SIZE
 * bytes (sparse: only what a test writes takes memory), sealed against
 * shrinking and growing, mapped shared, its header carrying the layout's
 * magic and PROTO_VERSION. A test writes records and stack entries through
 * the mapping with the helpers below, exactly where the agent would, and
 * hands a duplicate of the descriptor to the daemon's code (drain_open or
 * session_pass_fd take it over). Nothing here uses Check, so the fuzz
 * targets include it too; every function returns 0 or a negative errno.
 */
#ifndef MEMTRACE_TEST_TESTREGION_H
#define MEMTRACE_TEST_TESTREGION_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto.h"
#include "shm.h"

struct testregion {
	int fd;
	char *base;
	uint64_t arena_used; /* next free byte of the stack arena (0 means unset) */
};

static inline int testregion_create(struct testregion *r, uint64_t first_seq)
{
	int rc;

	r->fd = memfd_create("memtrace-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	r->base = NULL;
	r->arena_used = 64;
	if (r->fd < 0)
		return -errno;
	if (ftruncate(r->fd, (off_t)SHM_SIZE) < 0 ||
	    fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		rc = -errno;
		goto err_after_fd;
	}
	void *p =
	    mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		goto err_after_fd;
	}
	r->base = p;
	struct shm_header *h = p;
	h->magic = SHM_MAGIC;
	h->version = PROTO_VERSION;
	__atomic_store_n((uint64_t *)&h->seq, first_seq, __ATOMIC_RELEASE);
	return 0;
err_after_fd:
	close(r->fd);
	r->fd = -1;
	return rc;
}

static inline void testregion_destroy(struct testregion *r)
{
	if (r->base != NULL)
		munmap(r->base, SHM_SIZE);
	if (r->fd >= 0)
		close(r->fd);
	r->base = NULL;
	r->fd = -1;
}

/* A new descriptor of the region, for the code under test to own. */
static inline int testregion_fd(const struct testregion *r)
{
	return fcntl(r->fd, F_DUPFD_CLOEXEC, 0);
}

static inline struct shm_header *testregion_header(const struct testregion *r)
{
	return (struct shm_header *)r->base;
}

static inline struct shm_ring *testregion_ring(const struct testregion *r, uint32_t i)
{
	return (struct shm_ring *)(r->base + SHM_OFF_RING(i));
}

static inline struct shm_ev testregion_record(uint64_t seq, enum proto_ev_kind kind, uint64_t addr,
                                              uint64_t size, uint32_t stack)
{
	struct shm_ev e;

	memset(&e, 0, sizeof(e));
	e.seq_kind = seq << PROTO_EV_KIND_BITS | (uint64_t)kind;
	e.addr = addr;
	e.size = size;
	e.stack = stack;
	return e;
}

/* Appends a record as the producer does: the slot, then head (release). */
static inline void testregion_put(struct shm_ring *ring, const struct shm_ev *e)
{
	uint64_t h = __atomic_load_n((uint64_t *)&ring->head, __ATOMIC_RELAXED);

	ring->ev[h % SHM_RING_CAP] = *e;
	__atomic_store_n((uint64_t *)&ring->head, h + 1, __ATOMIC_RELEASE);
}

/* Empties ring i at position pos (head == tail == pos), nothing in flight,
 * nobody waiting; the records in its array stay. */
static inline void testregion_place(const struct testregion *r, uint32_t i, uint64_t pos)
{
	struct shm_ring *ring = testregion_ring(r, i);

	__atomic_store_n((uint64_t *)&ring->head, pos, __ATOMIC_RELAXED);
	__atomic_store_n((uint64_t *)&ring->tail, pos, __ATOMIC_RELAXED);
	__atomic_store_n((uint64_t *)&ring->pending, UINT64_MAX, __ATOMIC_RELAXED);
	__atomic_store_n((uint32_t *)&ring->wake_sent, 0, __ATOMIC_RELAXED);
	__atomic_store_n((uint32_t *)&ring->tail_futex, 0, __ATOMIC_RELAXED);
	__atomic_store_n((uint32_t *)&ring->waiters, 0, __ATOMIC_RELAXED);
}

/* Stack table: the entry's offset in the arena and its state, raw. */
static inline uint64_t *testregion_stack_offset(const struct testregion *r, uint32_t id)
{
	return (uint64_t *)(r->base + SHM_OFF_OFFSETS) + id;
}

static inline uint8_t *testregion_stack_state(const struct testregion *r, uint32_t id)
{
	return (uint8_t *)(r->base + SHM_OFF_STATES) + id;
}

/* Writes stack `id` (1 .. SHM_STACK_CAP) into the table as the agent does:
 * the entry, then its offset, then the state READY. -ENOSPC when the arena
 * is full, -EINVAL for an id or frame count the layout does not allow. */
static inline int testregion_stack(struct testregion *r, uint32_t id, const uint64_t *frames,
                                   uint32_t n)
{
	size_t sz = sizeof(struct shm_stack) + (size_t)n * sizeof(uint64_t);

	if (id == 0 || id > SHM_STACK_CAP || n == 0 || n > PROTO_MAX_FRAMES)
		return -EINVAL;
	if (r->arena_used + sz > SHM_ARENA)
		return -ENOSPC;
	uint64_t off = r->arena_used;
	r->arena_used += (sz + 15) & ~(size_t)15;
	struct shm_stack *e = (struct shm_stack *)(r->base + SHM_OFF_ARENA + off);
	e->hash = off;
	e->nframes = n;
	e->pad = 0;
	memcpy(e + 1, frames, (size_t)n * sizeof(uint64_t));
	__atomic_store_n(testregion_stack_offset(r, id), off, __ATOMIC_RELEASE);
	__atomic_store_n(testregion_stack_state(r, id), (uint8_t)SHM_STACK_READY, __ATOMIC_RELEASE);
	return 0;
}

#endif
