/* unwind.c - libunwind and frame-pointer stack capture (see unwind.h). */
#define UNW_LOCAL_ONLY
#include "unwind.h"

#include <fcntl.h>
#include <libunwind.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cfi.h"

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

void unwind_thread_exit(struct agent_tls *t)
{
	cfi_cache_free(t->cfi);
	t->cfi = NULL;
}

/* MEMTRACE_UNWIND_CHECK's counts. */
static _Atomic uint64_t check_walks, check_differ, check_handed;

/* Both walks of one stack; libunwind's is kept. */
static int walk_checked(struct agent_tls *t, void **buf, int max)
{
	uintptr_t mine[AGENT_MAX_FRAMES + SKIP_EXTRA];
	int got = unw_backtrace(buf, max);
	int n = cfi_backtrace(&t->cfi, t->stack_lo, t->stack_hi, mine, max);

	atomic_fetch_add_explicit(&check_walks, 1, memory_order_relaxed);
	/* unw_backtrace's first address is in this function, ours in the
	 * caller of cfi_backtrace, also this function: compare the rest. */
	if (n < 0)
		atomic_fetch_add_explicit(&check_handed, 1, memory_order_relaxed);
	else if (n != got ||
	         (n > 1 && memcmp(mine + 1, buf + 1, (size_t)(n - 1) * sizeof(*mine)) != 0))
		atomic_fetch_add_explicit(&check_differ, 1, memory_order_relaxed);
	return got;
}

__attribute__((destructor)) static void unwind_report(void)
{
	char line[160];

	if (!g_cfg.unwind_check)
		return;
	int n = snprintf(line, sizeof(line),
	                 "memtrace: unwind check: %llu walks, %llu differ from libunwind, %llu "
	                 "handed to it\n",
	                 (unsigned long long)atomic_load(&check_walks),
	                 (unsigned long long)atomic_load(&check_differ),
	                 (unsigned long long)atomic_load(&check_handed));
	int fd = g_cfg.unwind_report[0] != '\0'
	             ? open(g_cfg.unwind_report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)
	             : STDERR_FILENO;
	if (fd < 0)
		return;
	ssize_t w = write(fd, line, (size_t)n);
	(void)w;
	if (fd != STDERR_FILENO)
		close(fd);
}

uint32_t unwind_capture(struct agent_tls *t, uint64_t *out, uint32_t max)
{
	if (g_cfg.fp)
		return capture_fp(t, out, max);

	void *buf[AGENT_MAX_FRAMES + SKIP_EXTRA];
	int want = (int)(max + SKIP_EXTRA), got = -1;
	uint32_t n = 0;

	if (__builtin_expect(g_cfg.unwind_check, 0) && !t->dead)
		got = walk_checked(t, buf, want);
	else if (!g_cfg.libunwind && !t->dead)
		got = cfi_backtrace(&t->cfi, t->stack_lo, t->stack_hi, (uintptr_t *)buf, want);
	if (got < 0)
		got = unw_backtrace(buf, want);
	int i = 0;

	/* Drop the agent's own frames at the top only: a callback from the
	 * agent into user code cannot happen, so the rest is the program's. */
	while (i < got && in_agent((uintptr_t)buf[i]))
		i++;
	for (; i < got && n < max; i++)
		out[n++] = (uint64_t)(uintptr_t)buf[i] - 1;
	return n;
}
