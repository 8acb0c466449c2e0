/*
 * unwindy.cc - stacks that are hard to walk, for the differential test of
 * the agent's own unwinder against libunwind (tests/e2e/e2e_live.c,
 * unwind_differential): built -O2 without frame pointers, it allocates
 *  - at the bottom of recursions of varying depth (up to 80 frames), some
 *    through functions with alloca (their CFA is RBP-based);
 *  - while an exception unwinds through five frames (destructors allocate)
 *    and in the handler that catches it;
 *  - in a signal handler, on the thread's stack and on an alternate signal
 *    stack (the walk crosses the kernel's signal frame);
 *  - in code loaded with dlopen, closed and loaded again (argv[1]);
 *  - on four threads at once;
 *  - from one function called by two callers in turn whose frames are the
 *    same size: the walks start at the same address and stack pointer and
 *    differ only further out (the walk memo must not give one's stack to
 *    the other).
 * It prints "allocs=N signals=S": N allocations it made itself (each one a
 * walk), S of them in signal handlers (each one a walk through a signal
 * frame). Exit status 0.
 */
#include <alloca.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

static std::atomic<long> allocs{0}, in_signals{0};
/* Where each block is shown before it is freed, so that the compiler
 * cannot drop a malloc and free pair. */
static void *volatile sink;

static void *counted(size_t n)
{
	allocs++;
	void *p = malloc(n);
	sink = p;
	return p;
}

struct Noisy {
	void *p;
	Noisy() : p(counted(24))
	{
	}
	~Noisy()
	{
		/* Allocates while the exception passes through. */
		void *q = counted(40);
		free(q);
		free(p);
	}
};

__attribute__((noinline)) static void leaf(int depth)
{
	void *p = counted(16 + (size_t)depth);
	__asm__ volatile("" ::"r"(p) : "memory");
	free(p);
}

__attribute__((noinline)) static void with_alloca(int depth, int n);

__attribute__((noinline)) static void recurse(int depth, int n)
{
	if (depth == 0) {
		leaf(n);
		return;
	}
	if (depth % 7 == 3)
		with_alloca(depth - 1, n);
	else
		recurse(depth - 1, n);
	__asm__ volatile("" ::: "memory"); /* not a tail call */
}

__attribute__((noinline)) static void with_alloca(int depth, int n)
{
	char *buf = (char *)alloca(32 + (size_t)(n % 64));
	memset(buf, n, 32);
	__asm__ volatile("" ::"r"(buf) : "memory");
	recurse(depth, n);
	__asm__ volatile("" ::"r"(buf) : "memory");
}

__attribute__((noinline)) static void thrower(int depth)
{
	Noisy guard;
	if (depth == 0)
		throw std::runtime_error(std::string("deep enough, at ") + std::to_string(depth));
	thrower(depth - 1);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void catcher(int i)
{
	try {
		thrower(5);
	} catch (const std::exception &e) {
		void *p = counted(strlen(e.what()) + (size_t)i % 8);
		free(p);
	}
}

__attribute__((noinline)) static void shared_middle(int i)
{
	void *p = counted(48 + (size_t)(i & 1));
	__asm__ volatile("" ::"r"(p) : "memory");
	free(p);
	__asm__ volatile("" ::: "memory");
}

/* Twins: the same frame, different return addresses into main's loop. */
__attribute__((noinline)) static void twin_a(int i)
{
	volatile char pad[40];
	pad[i % 40] = (char)i;
	shared_middle(i);
	__asm__ volatile("" ::"r"(pad) : "memory");
}

__attribute__((noinline)) static void twin_b(int i)
{
	volatile char pad[40];
	pad[i % 40] = (char)(i + 1); /* not folded into twin_a */
	shared_middle(i);
	__asm__ volatile("" ::"r"(pad) : "memory");
}

static void on_signal(int sig)
{
	(void)sig;
	/* Not async-signal-safe in general; here the signal is raised by the
	 * thread itself, outside any malloc. */
	void *p = malloc(32);
	sink = p;
	allocs++;
	in_signals++;
	free(p);
}

__attribute__((noinline)) static void signals(int n)
{
	for (int i = 0; i < n; i++)
		raise(SIGUSR1);
}

typedef void *(*plugin_alloc_fn)(size_t, const char **, int *, const char **);

static void plugins(const char *path, int rounds)
{
	for (int r = 0; r < rounds; r++) {
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (h == NULL) {
			fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
			exit(1);
		}
		plugin_alloc_fn fn = (plugin_alloc_fn)dlsym(h, "plugin_alloc");
		for (int i = 0; i < 50; i++) {
			const char *file, *func;
			int line;
			allocs++;
			free(fn(64, &file, &line, &func));
		}
		dlclose(h);
	}
}

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 3000; i++)
		recurse(i % 80, i + (int)id);
	for (int i = 0; i < 200; i++)
		catcher(i);
	signals(100);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	stack_t ss;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < 2000; i++)
		recurse(i % 80, i);
	for (int i = 0; i < 300; i++)
		catcher(i);
	for (int i = 0; i < 2000; i++)
		(i % 3 == 0 ? twin_a : twin_b)(i);
	signals(200);
	/* The same handler on an alternate stack. */
	ss.ss_size = 1 << 16;
	ss.ss_sp = counted(ss.ss_size);
	ss.ss_flags = 0;
	sigaltstack(&ss, NULL);
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	signals(200);
	if (argc > 1)
		plugins(argv[1], 5);
	std::vector<pthread_t> t(4);
	for (size_t i = 0; i < t.size(); i++)
		pthread_create(&t[i], NULL, worker, (void *)(long)i);
	for (pthread_t &x : t)
		pthread_join(x, NULL);
	printf("allocs=%ld signals=%ld\n", allocs.load(), in_signals.load());
	return 0;
}
