/* ring.c - ring allocation, the registry and the free list (see ring.h). */
#include "ring.h"

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>

#include "sysdep.h"

static _Atomic(struct ring *) registry;
/* The free list is touched only at thread start and by the sender, never per
 * event, so a tiny spinlock is enough and avoids ABA on a lock-free pop. */
static _Atomic int free_lock;
static struct ring *free_list;

static void lock_free_list(void)
{
	while (atomic_exchange_explicit(&free_lock, 1, memory_order_acquire))
		sched_yield();
}

static void unlock_free_list(void)
{
	atomic_store_explicit(&free_lock, 0, memory_order_release);
}

struct ring *ring_registry(void)
{
	return atomic_load_explicit(&registry, memory_order_acquire);
}

static void ring_clear(struct ring *r)
{
	atomic_store(&r->head, 0);
	atomic_store(&r->tail, 0);
	atomic_store(&r->wake_sent, 0);
	atomic_store(&r->pending, UINT64_MAX);
	r->idle_since = 0;
}

struct ring *ring_acquire(pid_t tid)
{
	struct ring *r;

	lock_free_list();
	r = free_list;
	if (r != NULL)
		free_list = r->free_next;
	unlock_free_list();
	if (r != NULL) {
		ring_clear(r);
		r->tid = tid;
		atomic_store(&r->state, RING_LIVE);
		return r;
	}
	r = sysdep_map(sizeof(*r), 0);
	if (r == NULL)
		return NULL;
	ring_clear(r);
	r->tid = tid;
	atomic_store(&r->state, RING_LIVE);
	struct ring *old = atomic_load(&registry);
	do
		r->next = old;
	while (!atomic_compare_exchange_weak(&registry, &old, r));
	return r;
}

void ring_retire(struct ring *r)
{
	atomic_store_explicit(&r->state, RING_RETIRED, memory_order_release);
}

void ring_release(struct ring *r)
{
	atomic_store(&r->state, RING_FREE);
	lock_free_list();
	r->free_next = free_list;
	free_list = r;
	unlock_free_list();
}

void ring_reset_after_fork(struct ring *mine)
{
	/* Only the forking thread exists in the child, so no locking is
	 * needed; the parent's copy of the lock may even be held. */
	atomic_store(&free_lock, 0);
	free_list = NULL;
	for (struct ring *r = ring_registry(); r != NULL; r = r->next) {
		ring_clear(r);
		if (r == mine) {
			/* Same thread, new tid: else the sender's liveness check
			 * would take the ring away from the running child. */
			r->tid = sysdep_gettid();
			r->idle_since = sysdep_now_ns();
			continue;
		}
		atomic_store(&r->state, RING_FREE);
		r->free_next = free_list;
		free_list = r;
	}
}
