/* fdguard.c - the agent's file descriptors, kept apart from the program's
 * (see fdguard.h). */
#include "fdguard.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "globals.h"
#include "sysdep.h"

/* As FDGUARD_EXPORT (agent.h), which this module does not include: agent.c
 * reaches it through the sender. */
#define FDGUARD_EXPORT __attribute__((visibility("default")))

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The lowest number fdguard_high moves to (see fdguard.h). */
#define FD_FLOOR 512
/* The socket and libunwind's two pipe ends, with room for a re-created pipe
 * whose old ends libunwind has not closed yet. */
#define MAX_OWN 6

static _Atomic int own[MAX_OWN] = {-1, -1, -1, -1, -1, -1};

/* The real functions. Written once by the constructor (or by the first call
 * that came before it), read by every call. */
static struct {
	int (*close)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*pipe2)(int[2], int);
	int (*close_range)(unsigned int, unsigned int, int);
	void (*closefrom)(int);
} real;

#define REAL(name)                                                                                 \
	(__atomic_load_n(&real.name, __ATOMIC_ACQUIRE) != NULL ? real.name : resolve()->name)

static __typeof__(&real) resolve(void)
{
	int saved = errno;

	/* dlsym may allocate: the allocation hooks pass it through, as the
	 * agent is either not started yet or inside itself. */
	__atomic_store_n(&real.close, (int (*)(int))dlsym(RTLD_NEXT, "close"), __ATOMIC_RELEASE);
	__atomic_store_n(&real.dup2, (int (*)(int, int))dlsym(RTLD_NEXT, "dup2"), __ATOMIC_RELEASE);
	__atomic_store_n(&real.dup3, (int (*)(int, int, int))dlsym(RTLD_NEXT, "dup3"),
	                 __ATOMIC_RELEASE);
	__atomic_store_n(&real.pipe2, (int (*)(int[2], int))dlsym(RTLD_NEXT, "pipe2"),
	                 __ATOMIC_RELEASE);
	__atomic_store_n(&real.close_range,
	                 (int (*)(unsigned int, unsigned int, int))dlsym(RTLD_NEXT, "close_range"),
	                 __ATOMIC_RELEASE);
	__atomic_store_n(&real.closefrom, (void (*)(int))dlsym(RTLD_NEXT, "closefrom"),
	                 __ATOMIC_RELEASE);
	errno = saved;
	return &real;
}

__attribute__((constructor)) static void fdguard_init(void)
{
	resolve();
}

/* Whether the agent is tracing, or about to: its descriptors are in use. */
static int in_use(void)
{
	int st = atomic_load_explicit(&g_state, memory_order_relaxed);
	return st == AGENT_STARTING || st == AGENT_ACTIVE || st == AGENT_CHILD;
}

/* A call of the program (not of the agent, nor of libunwind inside it) that
 * the agent's descriptors must be kept from. */
static int guarding(void)
{
	return agent_tls.guard == 0 && in_use();
}

static int is_own(int fd)
{
	if (fd < 0)
		return 0;
	for (int i = 0; i < MAX_OWN; i++)
		if (atomic_load_explicit(&own[i], memory_order_relaxed) == fd)
			return 1;
	return 0;
}

void fdguard_own(int fd)
{
	for (int i = 0; i < MAX_OWN; i++) {
		int expect = -1;
		if (atomic_compare_exchange_strong(&own[i], &expect, fd))
			return;
	}
	/* Full: fd goes unguarded, as every descriptor did before. */
}

void fdguard_disown(int fd)
{
	for (int i = 0; i < MAX_OWN; i++) {
		int expect = fd;
		atomic_compare_exchange_strong(&own[i], &expect, -1);
	}
}

void fdguard_close(int fd)
{
	if (fd < 0)
		return;
	fdguard_disown(fd);
	REAL(close)(fd);
}

int fdguard_high(int fd, int cloexec)
{
	struct rlimit rl;
	int floor = FD_FLOOR, hi, saved = errno;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / 2 < (rlim_t)floor)
		floor = (int)(rl.rlim_cur / 2);
	if (fd < 0 || fd >= floor ||
	    (hi = fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, floor)) < 0) {
		errno = saved;
		return fd;
	}
	REAL(close)(fd);
	errno = saved;
	return hi;
}

/* The program is about to put a descriptor of its own on fd, one of the
 * agent's (or, fd < 0, to close them all): the agent stops using them before
 * that happens. */
static void give_up(int fd)
{
	char num[24];
	int st = atomic_load(&g_state);

	while ((st == AGENT_ACTIVE || st == AGENT_CHILD) &&
	       !atomic_compare_exchange_weak(&g_state, &st, AGENT_DISABLED))
		;
	if (st != AGENT_ACTIVE && st != AGENT_CHILD)
		;
	else if (fd >= 0)
		sysdep_say("the program put a descriptor of its own on the agent's (fd ",
		           sysdep_u64_str(num, (uint64_t)fd), "); it runs untraced from now on");
	else
		sysdep_say("the program closed the agent's descriptors with its own; it runs "
		           "untraced from now on",
		           NULL, NULL);
	for (int i = 0; i < MAX_OWN; i++)
		atomic_store(&own[i], -1);
}

static int real_close_range(unsigned int first, unsigned int last, int flags)
{
	if (REAL(close_range) != NULL)
		return real.close_range(first, last, flags);
#ifdef SYS_close_range
	return (int)syscall(SYS_close_range, first, last, flags);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* close_range over [first, last] minus the agent's descriptors. */
static int close_around(unsigned int first, unsigned int last, int flags)
{
	unsigned int lo = first;
	int rc;

	for (;;) {
		/* The lowest of the agent's descriptors in [lo, last]. */
		unsigned int next = last;
		int found = 0;
		for (int i = 0; i < MAX_OWN; i++) {
			int fd = atomic_load_explicit(&own[i], memory_order_relaxed);
			if (fd >= 0 && (unsigned int)fd >= lo && (unsigned int)fd <= next) {
				next = (unsigned int)fd;
				found = 1;
			}
		}
		if (!found)
			return real_close_range(lo, last, flags);
		if (next > lo && (rc = real_close_range(lo, next - 1, flags)) < 0)
			return rc;
		if (next == last)
			return 0;
		lo = next + 1;
	}
}

FDGUARD_EXPORT int close(int fd)
{
	if (is_own(fd)) {
		if (agent_tls.guard > 0 || !in_use()) {
			fdguard_disown(fd); /* libunwind re-creating its pipe, or a late close */
		} else {
			errno = EBADF; /* never the program's own */
			return -1;
		}
	}
	return REAL(close)(fd);
}

FDGUARD_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	/* CLOSE_RANGE_CLOEXEC closes nothing now, and the agent's descriptors
	 * are close-on-exec already. */
	if (!guarding() || first > last || (flags & (int)CLOSE_RANGE_CLOEXEC) != 0)
		return real_close_range(first, last, flags);
	return close_around(first, last, flags);
}

FDGUARD_EXPORT void closefrom(int lowfd)
{
	if (guarding() && lowfd >= 0) {
		if (close_around((unsigned int)lowfd, ~0U, 0) == 0)
			return;
		/* No close_range in this kernel: libc closes one by one, the
		 * agent's descriptors too. */
		give_up(-1);
	}
	if (REAL(closefrom) != NULL)
		real.closefrom(lowfd);
}

/* Whether dup2 or dup3 (old, new) is about to replace one of the agent's. */
static void before_dup(int oldfd, int newfd)
{
	if (oldfd != newfd && guarding() && is_own(newfd) && fcntl(oldfd, F_GETFD) >= 0)
		give_up(newfd);
}

FDGUARD_EXPORT int dup2(int oldfd, int newfd)
{
	before_dup(oldfd, newfd);
	return REAL(dup2)(oldfd, newfd);
}

FDGUARD_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	before_dup(oldfd, newfd);
	return REAL(dup3)(oldfd, newfd, flags);
}

FDGUARD_EXPORT int pipe2(int fds[2], int flags)
{
	int rc = REAL(pipe2)(fds, flags);

	/* Inside the agent only libunwind makes pipes: its validation pipe. */
	if (rc == 0 && agent_tls.guard > 0) {
		for (int i = 0; i < 2; i++) {
			fds[i] = fdguard_high(fds[i], (flags & O_CLOEXEC) != 0);
			fdguard_own(fds[i]);
		}
	}
	return rc;
}
