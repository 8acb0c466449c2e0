/*
 * agent.h - the agent's recording path, between the interposed functions
 * (hooks.c) and the rings.
 *
 * hooks.c calls agent_enter() first; when it returns a non-NULL thread state
 * the caller holds the recursion guard and must call agent_leave(). The
 * process's first call to agent_enter sets tracing up (agent.c, "start-up"),
 * so a hook reached before the agent's constructor already records. While the
 * guard is held every allocation on this thread passes straight through, so
 * the agent's own work (unwinding, dlsym, the first pthread call of a thread)
 * is never traced and never recurses.
 */
#ifndef MEMTRACE_AGENT_H
#define MEMTRACE_AGENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "globals.h"

#define AGENT_EXPORT __attribute__((visibility("default")))

/* Called in the process by memtracectl attach when the agent is loaded
 * already (agent.c): starts a new session. */
AGENT_EXPORT int memtrace_attach(void);

/* Resolves g_real; safe to call from any hook, any number of times. */
void agent_resolve_real(void);
/* Bootstrap allocations made while dlsym itself allocates. */
void *agent_boot_alloc(size_t size, size_t align);
#define AGENT_BOOT_SIZE (256 * 1024)
extern char agent_boot_arena[AGENT_BOOT_SIZE];
static inline int agent_is_boot(const void *p)
{
	return (const char *)p >= agent_boot_arena &&
	       (const char *)p < agent_boot_arena + AGENT_BOOT_SIZE;
}
/* Bytes of the arena from p to its used end (an upper bound of p's size). */
size_t agent_boot_avail(const void *p);

/* agent_enter's every case: the first call, a fork child's, a new
 * session's (epoch), nested calls, tracing off. */
struct agent_tls *agent_enter_slow(void);
static inline struct agent_tls *agent_enter(void)
{
	struct agent_tls *t = &agent_tls;
	/* The common case inline: tracing on, not nested, same session. */
	if (__builtin_expect(t->guard == 0 &&
	                         atomic_load_explicit(&g_state, memory_order_acquire) ==
	                             AGENT_ACTIVE &&
	                         t->epoch == atomic_load_explicit(&g_epoch, memory_order_relaxed),
	                     1)) {
		t->guard = 1;
		return t;
	}
	return agent_enter_slow();
}
static inline void agent_leave(struct agent_tls *t)
{
	t->guard--;
}

/* Capture the caller's stack; returns its id (0 = unknown). from: the
 * hook's __builtin_frame_address(0), where the walk out of the agent starts
 * (any frame of the agent's on the way to the program will do). */
uint32_t agent_stack(struct agent_tls *t, const void *from);
/* Sampling (MEMTRACE_SAMPLE): `size` when the allocation is to be recorded,
 * 0 to skip it. Without sampling every allocation is recorded; with it, one
 * of `size` bytes is recorded with probability 1 - exp(-size/sample_bytes)
 * (a zero-byte one never). */
uint64_t agent_sample_slow(struct agent_tls *t, uint64_t size);
static inline uint64_t agent_sample(struct agent_tls *t, uint64_t size)
{
	if (g_cfg.sample_bytes == 0)
		return size;
	/* The common case inline: not sampled, a compare and a subtraction. */
	if (t->sample_left > 0 && (uint64_t)t->sample_left > size) {
		t->sample_left -= (int64_t)size;
		return 0;
	}
	return agent_sample_slow(t, size);
}

/*
 * Sampled mode's common case, decided before agent_enter: an allocation of
 * `size` bytes that will not be sampled needs none of the agent's state,
 * only the thread's budget. agent_unsampled says whether it is such a one
 * (never inside the agent, whose own allocations must not move last_alloc);
 * the hook then makes the real call and agent_unsampled_done takes the
 * block from the budget, as agent_sample would have. The budget is the
 * same whether tracing is on or not, so the estimates stay unbiased.
 */
static inline int agent_unsampled(const struct agent_tls *t, uint64_t size)
{
	return g_cfg.sample_bytes != 0 && t->guard == 0 && t->sample_left > 0 &&
	       (uint64_t)t->sample_left > size;
}
static inline void *agent_unsampled_done(struct agent_tls *t, void *p, uint64_t size)
{
	if (p != NULL) {
		t->last_alloc = (uintptr_t)p; /* temporaries: see traced_alloc */
		t->sample_left -= (int64_t)size;
	}
	return p;
}

/* Records (after a successful allocation / before the real free). */
void agent_record_alloc(struct agent_tls *t, void *p, uint64_t size, uint32_t stack);
void agent_record_free(struct agent_tls *t, void *p);
/* realloc: seq for the free half is taken before the real call. */
struct agent_realloc_tx {
	struct shm_ring *ring;
	uint64_t free_seq;
	int ok;
};
void agent_realloc_begin(struct agent_tls *t, struct agent_realloc_tx *tx);
void agent_realloc_end(struct agent_tls *t, struct agent_realloc_tx *tx, void *old, void *newp,
                       uint64_t size, uint32_t stack, int freed);

#endif
