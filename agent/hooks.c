/*
 * hooks.c - the interposed allocation functions and dlclose, the agent's
 * exports with fdguard.c's descriptor functions.
 *
 * Each hook calls the real function and, when tracing is on and the thread is
 * not already inside the agent, records the event. The order of the sequence
 * number and the real call is the whole point (docs/DESIGN.md, "The path of
 * one allocation"): an allocation takes its number after the real call
 * returns, a free before the real call, so a free and a later reuse of the
 * same address on another thread are always numbered in their true order.
 *
 * Until the real functions are resolved (dlsym allocates), requests are served
 * from a static bootstrap arena; such blocks are never freed or traced. The
 * first hook may run before the agent's constructor (in another library's
 * constructor, or inside the loader): agent_enter then sets tracing up, and
 * this very call is recorded.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "cfi.h"
#include "sampleset.h"

static inline void ensure_real(void)
{
	if (__builtin_expect(__atomic_load_n(&g_real_ready, __ATOMIC_ACQUIRE) != 2, 0))
		agent_resolve_real();
}

/* True while dlsym is running on some thread and the real functions are not
 * known yet: the caller must use the bootstrap arena. Otherwise the real
 * functions are known when it returns (ensure_real's work), and the common
 * case is one load. */
static inline int booting(void)
{
	int st = __atomic_load_n(&g_real_ready, __ATOMIC_ACQUIRE);
	if (__builtin_expect(st == 2, 1))
		return 0;
	if (st == 1)
		return 1;
	agent_resolve_real();
	return 0;
}

/* from: the hook's frame (agent_stack). */
static void *traced_alloc(void *p, size_t size, struct agent_tls *t, const void *from)
{
	if (p != NULL) {
		t->last_alloc = (uintptr_t)p; /* sampled or not (temporaries) */
		uint64_t reported = agent_sample(t, size);
		if (reported != 0 || (size == 0 && g_cfg.sample_bytes == 0))
			agent_record_alloc(t, p, reported, agent_stack(t, from));
		/* before the program has p, so before anyone frees it */
		if (reported != 0 && g_cfg.sample_bytes != 0)
			sampleset_add((uintptr_t)p);
	}
	agent_leave(t);
	return p;
}

AGENT_EXPORT void *malloc(size_t size)
{
	if (booting())
		return agent_boot_alloc(size, 16);
	if (agent_unsampled(&agent_tls, size))
		return agent_unsampled_done(&agent_tls, g_real.malloc(size), size);
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.malloc(size);
	return traced_alloc(g_real.malloc(size), size, t, __builtin_frame_address(0));
}

/* free's recording part, apart so that free's sampled common case takes no
 * stack frame. */
static __attribute__((noinline)) void free_traced(void *p)
{
	struct agent_tls *t = agent_enter();
	if (t != NULL) {
		if (g_cfg.sample_bytes == 0 || sampleset_take((uintptr_t)p))
			agent_record_free(t, p);
		agent_leave(t);
	}
	g_real.free(p);
}

AGENT_EXPORT void free(void *p)
{
	if (p == NULL || agent_is_boot(p))
		return;
	ensure_real();
	/* Sampled: a block that was never sampled is not the daemon's
	 * business, and its free costs one load (sampleset.h). */
	if (g_cfg.sample_bytes != 0 && !sampleset_maybe((uintptr_t)p)) {
		g_real.free(p);
		return;
	}
	free_traced(p);
}

AGENT_EXPORT void *calloc(size_t nmemb, size_t size)
{
	if (booting()) {
		if (size != 0 && nmemb > SIZE_MAX / size)
			return NULL;
		return agent_boot_alloc(nmemb * size, 16); /* static storage is zeroed */
	}
	if (agent_unsampled(&agent_tls, (uint64_t)nmemb * size))
		return agent_unsampled_done(&agent_tls, g_real.calloc(nmemb, size),
		                            (uint64_t)nmemb * size);
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.calloc(nmemb, size);
	return traced_alloc(g_real.calloc(nmemb, size), nmemb * size, t,
	                    __builtin_frame_address(0));
}

static void *realloc_impl(void *old, size_t size)
{
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.realloc(old, size);
	uint64_t reported = agent_sample(t, size);
	uint32_t stack = reported != 0 ? agent_stack(t, __builtin_frame_address(0)) : 0;
	/* Sampled: the old block's free is sent only if it was sampled, and
	 * nothing at all when neither block is the daemon's. */
	bool sampled = g_cfg.sample_bytes != 0;
	void *was = old;
	if (sampled && old != NULL &&
	    (!sampleset_maybe((uintptr_t)old) || !sampleset_take((uintptr_t)old)))
		was = NULL;
	if (sampled && was == NULL && reported == 0) {
		void *p = g_real.realloc(old, size);
		if (p != NULL)
			t->last_alloc = (uintptr_t)p;
		agent_leave(t);
		return p;
	}
	struct agent_realloc_tx tx;
	agent_realloc_begin(t, &tx);
	void *p = g_real.realloc(old, size);
	/* realloc(p, 0) frees p in glibc and returns NULL; a NULL return for a
	 * non-zero size is a failure that leaves the old block alive. */
	int freed = p != NULL || size == 0;
	agent_realloc_end(t, &tx, was, p, reported, stack, freed);
	if (sampled && was != NULL && !freed)
		sampleset_add((uintptr_t)was); /* still live, still sampled */
	if (sampled && p != NULL && reported != 0)
		sampleset_add((uintptr_t)p);
	agent_leave(t);
	return p;
}

AGENT_EXPORT void *realloc(void *old, size_t size)
{
	int boot = booting();
	if (boot || agent_is_boot(old)) {
		/* A bootstrap block moves to a new block; its old size is unknown,
		 * but at most the rest of the arena lies after it. */
		void *p = boot ? agent_boot_alloc(size, 16) : malloc(size);
		if (p != NULL && old != NULL) {
			size_t avail = agent_boot_avail(old);
			memcpy(p, old, size < avail ? size : avail);
		}
		return p;
	}
	/* Sampled, neither the old block nor the new one: the real call and
	 * the budget (realloc_impl's way, with nothing to record). */
	struct agent_tls *t = &agent_tls;
	if (agent_unsampled(t, size) && (old == NULL || !sampleset_maybe((uintptr_t)old))) {
		t->sample_left -= (int64_t)size;
		void *p = g_real.realloc(old, size);
		if (p != NULL)
			t->last_alloc = (uintptr_t)p;
		return p;
	}
	return realloc_impl(old, size);
}

AGENT_EXPORT void *reallocarray(void *old, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(old, nmemb * size);
}

AGENT_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	if (booting()) {
		void *p = agent_boot_alloc(size, align);
		if (p == NULL)
			return ENOMEM;
		*out = p;
		return 0;
	}
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.posix_memalign(out, align, size);
	int rc = g_real.posix_memalign(out, align, size);
	traced_alloc(rc == 0 ? *out : NULL, size, t, __builtin_frame_address(0));
	return rc;
}

AGENT_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	if (booting())
		return agent_boot_alloc(size, align);
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.aligned_alloc(align, size);
	return traced_alloc(g_real.aligned_alloc(align, size), size, t, __builtin_frame_address(0));
}

AGENT_EXPORT void *memalign(size_t align, size_t size)
{
	if (booting())
		return agent_boot_alloc(size, align);
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.memalign(align, size);
	return traced_alloc(g_real.memalign(align, size), size, t, __builtin_frame_address(0));
}

AGENT_EXPORT void *valloc(size_t size)
{
	if (booting())
		return agent_boot_alloc(size, 4096);
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.valloc(size);
	return traced_alloc(g_real.valloc(size), size, t, __builtin_frame_address(0));
}

AGENT_EXPORT void *pvalloc(size_t size)
{
	if (booting())
		return agent_boot_alloc(size, 4096);
	struct agent_tls *t = agent_enter();
	if (t == NULL)
		return g_real.pvalloc(size);
	return traced_alloc(g_real.pvalloc(size), size, t, __builtin_frame_address(0));
}

/* Code unloaded: the unwind rules compiled for its addresses are stale
 * (cfi.h), as another object may be loaded there next. */
AGENT_EXPORT int dlclose(void *handle)
{
	static int (*real_dlclose)(void *);
	int (*fn)(void *) = __atomic_load_n(&real_dlclose, __ATOMIC_ACQUIRE);
	int rc;

	if (fn == NULL) {
		/* dlsym may allocate: the hooks trace it like the program's. */
		fn = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
		if (fn == NULL)
			return -1;
		__atomic_store_n(&real_dlclose, fn, __ATOMIC_RELEASE);
	}
	rc = fn(handle);
	cfi_forget();
	return rc;
}
