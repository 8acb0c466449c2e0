/* unwind.c - libunwind and frame-pointer stack capture (see unwind.h). */
#define UNW_LOCAL_ONLY
#include "unwind.h"

#include <libunwind.h>
#include <pthread.h>

/* Frames of the agent that can sit above the caller: unwind_capture,
 * agent_stack, traced_alloc and the hook (fewer when inlined). Asking
 * libunwind for more would walk frames nobody keeps. */
#define SKIP_EXTRA 4

void unwind_init(void)
{
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	unw_set_cache_size(unw_local_addr_space, 1024, 0);
}

void unwind_thread_init(struct agent_tls *t)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
			t->stack_lo = (uintptr_t)addr;
			t->stack_hi = (uintptr_t)addr + size;
		}
		pthread_attr_destroy(&attr);
	}
	if (!g_cfg.fp) {
		void *warm[4];
		unw_backtrace(warm, 4);
	}
}

static inline int in_agent(uintptr_t ip)
{
	return ip >= g_self_lo && ip < g_self_hi;
}

static uint32_t capture_fp(struct agent_tls *t, uint64_t *out, uint32_t max)
{
	uintptr_t *fp = __builtin_frame_address(0);
	uint32_t n = 0;

	if (t->stack_hi == 0)
		return 0;
	while (n < max) {
		uintptr_t f = (uintptr_t)fp;
		if (f < t->stack_lo || f + 2 * sizeof(uintptr_t) > t->stack_hi || (f & 7) != 0)
			break;
		uintptr_t ret = fp[1];
		if (ret < 4096)
			break;
		if (!in_agent(ret))
			out[n++] = ret - 1;
		uintptr_t *next = (uintptr_t *)fp[0];
		if ((uintptr_t)next <= f)
			break;
		fp = next;
	}
	return n;
}

uint32_t unwind_capture(struct agent_tls *t, uint64_t *out, uint32_t max)
{
	if (g_cfg.fp)
		return capture_fp(t, out, max);

	void *buf[AGENT_MAX_FRAMES + SKIP_EXTRA];
	int got = unw_backtrace(buf, (int)(max + SKIP_EXTRA));
	uint32_t n = 0;
	int i = 0;

	/* Drop the agent's own frames at the top only: a callback from the
	 * agent into user code cannot happen, so the rest is the program's. */
	while (i < got && in_agent((uintptr_t)buf[i]))
		i++;
	for (; i < got && n < max; i++)
		out[n++] = (uint64_t)(uintptr_t)buf[i] - 1;
	return n;
}
