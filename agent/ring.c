/* ring.c - ring slots, the free list and reclaiming (see ring.h). */
#include "ring.h"

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>

#include "sysdep.h"

/* Private bookkeeping per slot: not the daemon's business. The free list is
 * touched only at thread start and by the sender, never per event, so a tiny
 * spinlock is enough and avoids ABA on a lock-free pop. */
/* The region's mapping: set by region.c (which the agent links, the unit
 * tests stand in for), defined here with the rings that live in it. */
struct shm_header *g_shm;
char *g_region;

static uint64_t idle_since[SHM_NRINGS];
static uint64_t given_back_at[SHM_NRINGS]; /* head when its pages last went back */
static int32_t free_next[SHM_NRINGS];
static int32_t free_head = -1;
static _Atomic int free_lock;

static void lock_free_list(void)
{
	while (atomic_exchange_explicit(&free_lock, 1, memory_order_acquire))
		sched_yield();
}

static void unlock_free_list(void)
{
	atomic_store_explicit(&free_lock, 0, memory_order_release);
}

uint32_t ring_count(void)
{
	uint32_t n = g_shm != NULL ? atomic_load_explicit(&g_shm->nrings, memory_order_acquire) : 0;
	return n > SHM_NRINGS ? SHM_NRINGS : n;
}

struct shm_ring *ring_at(uint32_t i)
{
	return (struct shm_ring *)(g_region + SHM_OFF_RING(i));
}

static uint32_t ring_index(const struct shm_ring *r)
{
	return (uint32_t)(((const char *)r - g_region - SHM_OFF_RINGS) / sizeof(struct shm_ring));
}

static void ring_init(struct shm_ring *r, pid_t tid)
{
	/* A reused ring is empty (reclaimed only when drained): its head and
	 * tail stay where they are, the daemon's view of it stays valid. */
	atomic_store(&r->wake_sent, 0);
	atomic_store(&r->pending, UINT64_MAX);
	r->tid = (uint32_t)tid;
	idle_since[ring_index(r)] = sysdep_now_ns();
	atomic_store_explicit(&r->state, RING_LIVE, memory_order_release);
}

struct shm_ring *ring_acquire(pid_t tid)
{
	struct shm_ring *r = NULL;

	if (g_shm == NULL)
		return NULL;
	lock_free_list();
	if (free_head >= 0) {
		r = ring_at((uint32_t)free_head);
		free_head = free_next[free_head];
	}
	unlock_free_list();
	if (r == NULL) {
		uint32_t n = atomic_load(&g_shm->nrings);
		do
			if (n >= SHM_NRINGS)
				return NULL;
		while (!atomic_compare_exchange_weak(&g_shm->nrings, &n, n + 1));
		r = ring_at(n);
		given_back_at[n] = 0;
		atomic_store(&r->head, 0);
		atomic_store(&r->tail, 0);
	}
	ring_init(r, tid);
	return r;
}

void ring_retire(struct shm_ring *r)
{
	atomic_store_explicit(&r->state, RING_RETIRED, memory_order_release);
}

/* The pages of an empty ring's records go back to the kernel once its
 * threads wrote an eighth of it (512 KiB) since the last time: a ring holds
 * SHM_RING_CAP records (4 MiB), and a program that once had many busy
 * threads should not keep that much per thread it had; a thread that
 * recorded little is not worth the system call. Nothing reads the records
 * (head == tail) and the next thread to take the ring writes before the
 * daemon reads. Errors are ignored: the pages then stay. */
static void ring_give_back(uint32_t i)
{
	struct shm_ring *r = ring_at(i);
	uint64_t head = atomic_load(&r->head);
	if (head - given_back_at[i] < SHM_RING_CAP / 8)
		return;
	given_back_at[i] = head;
	uintptr_t page = 4096, lo = (uintptr_t)&r->ev[0], hi = (uintptr_t)&r->ev[SHM_RING_CAP];
	lo = (lo + page - 1) & ~(page - 1);
	hi &= ~(page - 1);
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_REMOVE);
}

static void ring_release(uint32_t i)
{
	ring_give_back(i);
	atomic_store(&ring_at(i)->state, RING_FREE);
	lock_free_list();
	free_next[i] = free_head;
	free_head = (int32_t)i;
	unlock_free_list();
}

void ring_reclaim(uint64_t now, int check_alive, uint64_t idle_ns, pid_t pid)
{
	uint32_t n = ring_count();

	for (uint32_t i = 0; i < n; i++) {
		struct shm_ring *r = ring_at(i);
		uint32_t st = atomic_load(&r->state);
		if (st == RING_FREE)
			continue;
		int empty = atomic_load(&r->head) == atomic_load(&r->tail) &&
		            atomic_load(&r->pending) == UINT64_MAX;
		if (!empty) {
			idle_since[i] = now;
			continue;
		}
		if (st == RING_RETIRED)
			ring_release(i);
		else if (check_alive && now - idle_since[i] > idle_ns &&
		         !sysdep_thread_alive(pid, (pid_t)r->tid))
			ring_release(i); /* the thread exited after its key destructor ran */
	}
}

void ring_reset_after_fork(void)
{
	/* Only the forking thread exists in the child, so no locking is
	 * needed; the parent's copy of the lock may even be held. */
	atomic_store(&free_lock, 0);
	free_head = -1;
}
