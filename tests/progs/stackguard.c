/* stackguard.c - a walk the memo remembered, recalled where a page above
 * it has become unreadable (e2e_live: memo_guard_page).
 *
 * A thread carves a coroutine stack out of an array on its own stack (so
 * the agent walks it: it lies within the thread's stack bounds). The same
 * chain of calls runs on it three times with malloc at the same SP: twice
 * from the pool's top (the walk is remembered, then recalled), then, with
 * the pool's top page made PROT_NONE, from 8 KiB lower (an alloca keeps the
 * SP). The third stack differs from the remembered one in its pad frame,
 * below the protected page, which holds the remembered walk's upper words:
 * the memo must stop at the first word that differs and never read them.
 * Prints "survived" and exits 0 when it does. argv[1]: the depth of the
 * recursion (default 28: with MEMTRACE_NFRAMES=32 the walk stops at its
 * limit before the coroutine's first frame, so it is remembered); argv[2]
 * "shifted": malloc's caller has no frame pointer (allocate_shifted). */
#define _GNU_SOURCE
#include <alloca.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define POOL_BYTES (256 * 1024)
#define PAGE       4096

static ucontext_t caller, coro;
static char *pool;
static uintptr_t malloc_sp; /* where the chain's frames start, every run */
static int depth = 28;
static void *volatile keep;

__attribute__((noinline)) static void allocate(void)
{
	for (int i = 0; i < 4; i++) {
		void *p = malloc(24);
		keep = p;
		free(p);
	}
}

/* The same without a frame pointer: the walk's first step reads one word
 * (the return address) where allocate's reads two (and RBP), so every
 * word the memo checks after it moves by one in its two-a-turn check, and
 * the first that differs ends a turn rather than starting one. */
__attribute__((noinline, optimize("omit-frame-pointer"))) static void allocate_shifted(void)
{
	for (int i = 0; i < 4; i++) {
		void *p = malloc(24);
		keep = p;
		free(p);
	}
}

static int shifted;

__attribute__((noinline)) static void descend(int n)
{
	volatile char frame[256];

	frame[0] = (char)n;
	if (n > 0)
		descend(n - 1);
	else if (shifted)
		allocate_shifted();
	else
		allocate();
	keep = (void *)frame;
}

/* Moves SP down to malloc_sp whatever the top the coroutine began at. */
__attribute__((noinline)) static void level(void)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	char *gap = alloca(here - malloc_sp);

	keep = gap;
	descend(depth);
}

static void coroutine(void)
{
	level();
}

static void run_from(size_t top)
{
	getcontext(&coro);
	coro.uc_stack.ss_sp = pool;
	coro.uc_stack.ss_size = top;
	coro.uc_link = &caller;
	makecontext(&coro, coroutine, 0);
	swapcontext(&caller, &coro);
}

static void *thread_main(void *arg)
{
	char space[POOL_BYTES + PAGE];

	(void)arg;
	pool = (char *)(((uintptr_t)space + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
	memset(pool, 0, POOL_BYTES);
	keep = malloc(1); /* the thread's first event, on its own stack */
	free(keep);
	malloc_sp = (uintptr_t)pool + POOL_BYTES / 2;
	run_from(POOL_BYTES);
	run_from(POOL_BYTES);
	if (mprotect(pool + POOL_BYTES - PAGE, PAGE, PROT_NONE) != 0) {
		perror("mprotect");
		exit(2);
	}
	run_from(POOL_BYTES - 2 * PAGE);
	mprotect(pool + POOL_BYTES - PAGE, PAGE, PROT_READ | PROT_WRITE);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_attr_t attr;
	pthread_t t;

	if (argc > 1)
		depth = atoi(argv[1]);
	shifted = argc > 2 && strcmp(argv[2], "shifted") == 0;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 4 << 20);
	if (pthread_create(&t, &attr, thread_main, NULL) != 0)
		return 2;
	pthread_join(t, NULL);
	puts("survived");
	return 0;
}
