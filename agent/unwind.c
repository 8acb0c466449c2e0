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
#include "stacktab.h"

/* Frames of the agent that can sit above the caller: walk_libunwind,
 * unwind_capture and stack_walk or unwind_known and recall_checked,
 * agent_stack, traced_alloc and the hook (fewer when inlined). Asking
 * libunwind for more would walk frames nobody keeps; fewer would cut deep
 * stacks short. */
#define SKIP_EXTRA 8

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

void unwind_thread_exit(struct agent_tls *t)
{
	cfi_cache_free(t->cfi);
	t->cfi = NULL;
}

/* The program's frame that called into the agent, from the agent's own
 * frame pointers (the agent is built with them), starting at frame `from`
 * of the agent (the hook's, so that one step finds it): the first return
 * address outside the agent, and SP and RBP as they were at that call. */
static inline int program_frame(const struct agent_tls *t, const void *from, struct cfi_regs *r)
{
	const uintptr_t *fp = from;

	for (int i = 0; i < 16; i++) {
		uintptr_t f = (uintptr_t)fp;
		if (f < t->stack_lo || f + 16 > t->stack_hi || (f & 7) != 0)
			return -1;
		if (!in_agent(fp[1])) {
			r->ip = fp[1];
			r->sp = f + 16;
			r->bp = fp[0];
			return 0;
		}
		if (fp[0] <= f)
			return -1;
		fp = (const uintptr_t *)fp[0];
	}
	return -1;
}

static uint32_t capture_fp(struct agent_tls *t, uint64_t *out, uint32_t max)
{
	struct cfi_regs r;
	uint32_t n = 0;

	if (program_frame(t, __builtin_frame_address(0), &r) < 0)
		return 0;
	/* From the program's frame on, each frame record is the caller's
	 * RBP and its return address, rising on the stack. */
	uintptr_t ret = r.ip, prev = r.sp - 16;
	const uintptr_t *fp = (const uintptr_t *)r.bp;
	while (n < max && ret >= 4096) {
		out[n++] = ret - 1;
		uintptr_t f = (uintptr_t)fp;
		if (f <= prev || f < t->stack_lo || f + 16 > t->stack_hi || (f & 7) != 0)
			break;
		ret = fp[1];
		prev = f;
		fp = (const uintptr_t *)fp[0];
	}
	return n;
}

/* libunwind's walk, the agent's frames dropped: the program's frames. */
static int walk_libunwind(uintptr_t *out, int max)
{
	void *buf[AGENT_MAX_FRAMES + SKIP_EXTRA];
	int got = unw_backtrace(buf, max + SKIP_EXTRA), i = 0, n = 0;

	/* Drop the agent's own frames at the top only: a callback from the
	 * agent into user code cannot happen, so the rest is the program's. */
	while (i < got && in_agent((uintptr_t)buf[i]))
		i++;
	for (; i < got && n < max; i++)
		out[n++] = (uintptr_t)buf[i];
	return n;
}

/* MEMTRACE_UNWIND_CHECK's counts. */
static _Atomic uint64_t check_walks, check_differ, check_handed, check_recalled;

/* Both walks of one stack; libunwind's is kept. *same: ours was equal. */
static int walk_checked(struct agent_tls *t, const struct cfi_regs *start, uintptr_t *out, int max,
                        bool *same)
{
	uintptr_t mine[AGENT_MAX_FRAMES];
	int got = walk_libunwind(out, max);
	int n =
	    start != NULL ? cfi_backtrace(&t->cfi, t->stack_lo, t->stack_hi, start, mine, max) : -1;

	*same = false;
	atomic_fetch_add_explicit(&check_walks, 1, memory_order_relaxed);
	if (n < 0)
		atomic_fetch_add_explicit(&check_handed, 1, memory_order_relaxed);
	else if (n != got || memcmp(mine, out, (size_t)n * sizeof(*mine)) != 0)
		atomic_fetch_add_explicit(&check_differ, 1, memory_order_relaxed);
	else
		*same = true;
	return got;
}

/* A remembered walk's stack against libunwind's walk of this one. */
static bool recall_checked(uint32_t id, uint32_t max)
{
	uintptr_t buf[AGENT_MAX_FRAMES];
	const uint64_t *frames;
	uint32_t n;
	int got = walk_libunwind(buf, (int)max);
	bool same = stacktab_get(id, &frames, &n) == 1 && (int)n == got;

	for (int i = 0; same && i < got; i++)
		same = frames[i] == (uint64_t)buf[i] - 1;
	atomic_fetch_add_explicit(&check_walks, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&check_recalled, 1, memory_order_relaxed);
	if (!same)
		atomic_fetch_add_explicit(&check_differ, 1, memory_order_relaxed);
	return same;
}

__attribute__((destructor)) static void unwind_report(void)
{
	char line[160];

	if (!g_cfg.unwind_check)
		return;
	int n = snprintf(line, sizeof(line),
	                 "memtrace: unwind check: %llu walks, %llu differ from libunwind, %llu "
	                 "handed to it, %llu recalled\n",
	                 (unsigned long long)atomic_load(&check_walks),
	                 (unsigned long long)atomic_load(&check_differ),
	                 (unsigned long long)atomic_load(&check_handed),
	                 (unsigned long long)atomic_load(&check_recalled));
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

uint32_t unwind_known(struct agent_tls *t, struct unwind_walk *w, uint32_t max, const void *from)
{
	w->have = false;
	w->walked = false;
	if (g_cfg.fp || t->dead)
		return 0;
	w->have = program_frame(t, from, &w->start) == 0;
	if (!w->have || g_cfg.libunwind)
		return 0;
	uint32_t id = cfi_recall(t->cfi, &w->start, (int)max);
	if (__builtin_expect(g_cfg.unwind_check, 0) && id != 0 && !recall_checked(id, max)) {
		cfi_unlearn(t->cfi, &w->start, (int)max);
		return 0;
	}
	return id;
}

uint32_t unwind_capture(struct agent_tls *t, struct unwind_walk *w, uint64_t *out, uint32_t max)
{
	if (g_cfg.fp)
		return capture_fp(t, out, max);

	uintptr_t buf[AGENT_MAX_FRAMES];
	int got = -1;

	if (__builtin_expect(g_cfg.unwind_check, 0) && !t->dead)
		got = walk_checked(t, w->have ? &w->start : NULL, buf, (int)max, &w->walked);
	else if (!g_cfg.libunwind && w->have) {
		got = cfi_backtrace(&t->cfi, t->stack_lo, t->stack_hi, &w->start, buf, (int)max);
		w->walked = got >= 0;
	}
	if (got < 0)
		got = walk_libunwind(buf, (int)max);
	for (int i = 0; i < got; i++)
		out[i] = (uint64_t)buf[i] - 1;
	return (uint32_t)got;
}

void unwind_learn(struct agent_tls *t, const struct unwind_walk *w, uint32_t id)
{
	if (w->walked)
		cfi_remember(t->cfi, id);
}
