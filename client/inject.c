/* inject.c - making a running process load a library (see inject.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "inject.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 30000 /* dlopen runs the agent's constructor, which connects */
#define PAGE            4096

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int say(char *why, size_t cap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int say(char *why, size_t cap, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	return rc;
}

#if defined(__x86_64__)

/*
 * The process exec'd while it was in our hands (PTRACE_EVENT_EXEC). A
 * process may do that on purpose inside a call we made (it chooses what
 * dlopen runs): a setuid program exec'd under root's ptrace keeps its
 * privileges, and the registers we would put back, or the memory we would
 * write, would then be the attacker's in a privileged program. From that
 * stop on nothing is written: no register, no memory; the thread is only
 * let go.
 */
static bool execd;

/* Where the target mapped our libc, and which of its mappings a thread
 * must not be stopped in (libc, the loader, an allocator's library). */
struct layout {
	uintptr_t our_base, their_base;
	struct {
		uintptr_t lo, hi;
	} unsafe[64];
	int nunsafe;
};

static int read_layout(pid_t pid, struct layout *l, char *why, size_t cap)
{
	Dl_info info;
	struct stat st;
	char path[64], line[4096];

	memset(l, 0, sizeof(*l));
	if (dladdr((void *)dlopen, &info) == 0 || info.dli_fname == NULL ||
	    stat(info.dli_fname, &st) != 0)
		return say(why, cap, -ENOEXEC, "cannot find memtracectl's own libc");
	l->our_base = (uintptr_t)info.dli_fbase;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return say(why, cap, errno == ENOENT ? -ESRCH : -errno, "cannot read %s: %s", path,
		           strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi, off, ino;
		unsigned maj, min;
		char perms[8];
		int name = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &lo, &hi, perms, &off, &maj, &min,
		           &ino, &name) < 7)
			continue;
		const char *file = name > 0 ? line + name : "";
		bool libc = ino == st.st_ino && makedev(maj, min) == st.st_dev;
		if (libc && off == 0 && (l->their_base == 0 || lo < l->their_base))
			l->their_base = lo;
		if ((libc || strstr(file, "/ld-linux") != NULL || strstr(file, "malloc") != NULL) &&
		    l->nunsafe < (int)(sizeof(l->unsafe) / sizeof(l->unsafe[0]))) {
			l->unsafe[l->nunsafe].lo = lo;
			l->unsafe[l->nunsafe].hi = hi;
			l->nunsafe++;
		}
	}
	fclose(f);
	if (l->their_base == 0)
		return say(why, cap, -ENOEXEC,
		           "the process does not use memtracectl's libc (%s): it is statically "
		           "linked, or runs with another C library (a container's?)",
		           info.dli_fname);
	return 0;
}

/* A function of our libc, at its address in the target. */
static uintptr_t remote(const struct layout *l, void *ours)
{
	return (uintptr_t)ours - l->our_base + l->their_base;
}

/* Stopped where the calls can run: in a system call, or outside libc, the
 * loader and the allocator. */
static bool safe_point(const struct layout *l, const struct user_regs_struct *r)
{
	if ((long long)r->orig_rax >= 0)
		return true;
	for (int i = 0; i < l->nunsafe; i++)
		if (r->rip >= l->unsafe[i].lo && r->rip < l->unsafe[i].hi)
			return false;
	return true;
}

/* Waits for the thread to stop; its wait status in *st. */
static int wait_stop(pid_t pid, int *st, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		pid_t w = waitpid(pid, st, __WALL | WNOHANG);
		if (w == pid) {
			if (WIFEXITED(*st) || WIFSIGNALED(*st))
				return -ESRCH;
			return 0;
		}
		if (w < 0 && errno != EINTR)
			return -errno;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		usleep(200);
	}
}

/* Stops the seized thread (PTRACE_INTERRUPT) and reads its registers. */
static int interrupt(pid_t pid, struct user_regs_struct *r)
{
	int st, rc;
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0)
		return -errno;
	for (;;) {
		if ((rc = wait_stop(pid, &st, 5000)) < 0)
			return rc;
		if ((st >> 16) == PTRACE_EVENT_EXEC) {
			execd = true;
			return -ECHILD;
		}
		if ((st >> 16) == PTRACE_EVENT_STOP)
			break;
		/* A signal on its way to the thread: let it go on, and stop
		 * again. */
		if (ptrace(PTRACE_CONT, pid, 0, (void *)(uintptr_t)WSTOPSIG(st)) < 0)
			return -errno;
		if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0)
			return -errno;
	}
	return ptrace(PTRACE_GETREGS, pid, 0, r) < 0 ? -errno : 0;
}

static int write_mem(pid_t pid, uintptr_t at, const void *p, size_t n)
{
	if (execd)
		return -ECHILD;
	struct iovec local = {(void *)p, n}, far = {(void *)at, n};
	return process_vm_writev(pid, &local, 1, &far, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int read_mem(pid_t pid, uintptr_t at, void *p, size_t n)
{
	struct iovec local = {p, n}, far = {(void *)at, n};
	return process_vm_readv(pid, &local, 1, &far, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

/* Calls fn(a[0..5]) on the stopped thread, on its stack below the red
 * zone, returning to address 0: its fault stops the thread again. */
static int call(pid_t pid, const struct user_regs_struct *saved, uintptr_t fn, const uint64_t a[6],
                uint64_t *ret, char *why, size_t cap)
{
	struct user_regs_struct r = *saved;
	uint64_t zero = 0, sp = ((saved->rsp - 256) & ~(uint64_t)15) - 8;
	int st, rc;

	if (execd)
		return say(why, cap, -ECHILD, "the process ran another program (exec)");

	if (write_mem(pid, sp, &zero, sizeof zero) < 0)
		return say(why, cap, -EFAULT, "cannot write to the process's stack");
	r.rsp = sp;
	r.rip = fn;
	r.rdi = a[0], r.rsi = a[1], r.rdx = a[2], r.rcx = a[3], r.r8 = a[4], r.r9 = a[5];
	r.rax = 0;
	r.orig_rax = (uint64_t)-1; /* no system call to restart meanwhile */
	if (ptrace(PTRACE_SETREGS, pid, 0, &r) < 0 || ptrace(PTRACE_CONT, pid, 0, 0) < 0)
		return say(why, cap, -errno, "ptrace: %s", strerror(errno));
	uint64_t deadline = now_ns() + (uint64_t)CALL_TIMEOUT_MS * 1000000u;
	for (;;) {
		int left = (int)((deadline - now_ns()) / 1000000u);
		if ((rc = wait_stop(pid, &st, left > 0 ? left : 1)) < 0)
			return say(why, cap, rc,
			           rc == -ESRCH ? "the process ended during the call"
			                        : "the call in the process did not return in %d s",
			           CALL_TIMEOUT_MS / 1000);
		int sig = WSTOPSIG(st);
		if ((st >> 16) == PTRACE_EVENT_EXEC) {
			execd = true;
			return say(why, cap, -ECHILD,
			           "the process ran another program (exec) during the call: it was "
			           "let go untouched");
		}
		if ((st >> 16) == PTRACE_EVENT_STOP)
			sig = 0;
		else if (sig == SIGSEGV) {
			if (ptrace(PTRACE_GETREGS, pid, 0, &r) < 0)
				return say(why, cap, -errno, "ptrace: %s", strerror(errno));
			if (r.rip == 0) {
				*ret = r.rax;
				return 0;
			}
			return say(why, cap, -EFAULT, "the call faulted in the process at %#llx",
			           (unsigned long long)r.rip);
		}
		if (ptrace(PTRACE_CONT, pid, 0, (void *)(uintptr_t)sig) < 0)
			return say(why, cap, -errno, "ptrace: %s", strerror(errno));
	}
}

static int run_calls(pid_t pid, const struct layout *l, const struct user_regs_struct *saved,
                     const char *path, const struct inject_env *env, size_t nenv, const char *entry,
                     int *entry_ret, char *why, size_t cap)
{
	char page[PAGE];
	size_t used = 0;
	uint64_t ret,
	    args[6] = {0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1,
	               0};
	uintptr_t names[16], values[16], lib, sym = 0;
	int rc;

	/* The strings go to a page of their own in the process. */
	if (nenv > 16)
		return say(why, cap, -E2BIG, "too many variables");
	if ((rc = call(pid, saved, remote(l, (void *)mmap), args, &ret, why, cap)) < 0)
		return rc;
	if (ret == (uint64_t)MAP_FAILED || ret > (uint64_t)-4096)
		return say(why, cap, -ENOMEM, "mmap in the process failed");
	uintptr_t base = (uintptr_t)ret;
	memset(page, 0, sizeof page);
#define PUT(s, where)                                                                              \
	do {                                                                                       \
		size_t n_ = strlen(s) + 1;                                                         \
		if (used + n_ > sizeof page) {                                                     \
			rc = say(why, cap, -E2BIG, "the path and variables are too long");         \
			goto unmap;                                                                \
		}                                                                                  \
		memcpy(page + used, (s), n_);                                                      \
		(where) = base + used;                                                             \
		used += n_;                                                                        \
	} while (0)
	for (size_t i = 0; i < nenv; i++) {
		PUT(env[i].name, names[i]);
		PUT(env[i].value, values[i]);
	}
	PUT(path, lib);
	if (entry != NULL)
		PUT(entry, sym);
#undef PUT
	if ((rc = write_mem(pid, base, page, used)) < 0) {
		say(why, cap, rc, "cannot write to the process's memory");
		goto unmap;
	}
	for (size_t i = 0; i < nenv; i++) {
		uint64_t a[6] = {names[i], values[i], 1, 0, 0, 0};
		if ((rc = call(pid, saved, remote(l, (void *)setenv), a, &ret, why, cap)) < 0)
			goto unmap;
	}
	uint64_t a[6] = {lib, RTLD_NOW | RTLD_LOCAL, 0, 0, 0, 0};
	if ((rc = call(pid, saved, remote(l, (void *)dlopen), a, &ret, why, cap)) < 0)
		goto unmap;
	if (ret == 0) {
		uint64_t none[6] = {0};
		char msg[512] = "";
		if (call(pid, saved, remote(l, (void *)dlerror), none, &ret, why, cap) == 0 &&
		    ret != 0)
			for (size_t i = 0; i + 1 < sizeof msg; i++)
				if (read_mem(pid, (uintptr_t)ret + i, &msg[i], 1) < 0 ||
				    msg[i] == '\0')
					break;
		rc = say(why, cap, -EIO, "dlopen in the process failed: %s",
		         msg[0] != '\0' ? msg : "no reason given");
		goto unmap;
	}
	if (entry != NULL) {
		uint64_t d[6] = {ret, sym, 0, 0, 0, 0}, none[6] = {0};
		if ((rc = call(pid, saved, remote(l, (void *)dlsym), d, &ret, why, cap)) < 0)
			goto unmap;
		if (ret == 0) {
			rc = say(why, cap, -ENOENT, "the library in the process has no %s", entry);
			goto unmap;
		}
		if ((rc = call(pid, saved, (uintptr_t)ret, none, &ret, why, cap)) < 0)
			goto unmap;
		*entry_ret = (int)(uint32_t)ret;
	}
unmap:;
	uint64_t u[6] = {base, PAGE, 0, 0, 0, 0};
	char ignored[64];
	call(pid, saved, remote(l, (void *)munmap), u, &ret, ignored, sizeof ignored);
	return rc;
}

int inject_library(pid_t pid, const char *path, const struct inject_env *env, size_t nenv,
                   const char *entry, int *entry_ret, uint64_t *pause_ns, char *why, size_t cap)
{
	struct layout l;
	struct user_regs_struct saved;
	int rc, tries;

	*pause_ns = 0;
	why[0] = '\0';
	execd = false;
	if ((rc = read_layout(pid, &l, why, cap)) < 0)
		return rc;
	if (ptrace(PTRACE_SEIZE, pid, 0, (void *)(uintptr_t)PTRACE_O_TRACEEXEC) < 0)
		return say(why, cap, errno == ESRCH ? -ESRCH : -EPERM, "ptrace: %s",
		           strerror(errno));
	uint64_t stopped = 0;
	for (tries = 0; tries < INJECT_TRIES; tries++) {
		if ((rc = interrupt(pid, &saved)) < 0) {
			say(why, cap, rc, "cannot stop the process: %s", strerror(-rc));
			goto detach;
		}
		stopped = now_ns();
		if (safe_point(&l, &saved))
			break;
		ptrace(PTRACE_CONT, pid, 0, 0);
		usleep(1000);
	}
	if (tries == INJECT_TRIES) {
		rc = say(why, cap, -EBUSY,
		         "the process's main thread was inside libc or its allocator at every "
		         "one of %d stops; try again",
		         INJECT_TRIES);
		goto detach;
	}
	rc = run_calls(pid, &l, &saved, path, env, nenv, entry, entry_ret, why, cap);
	/* As it was: an interrupted system call restarts as after a signal.
	 * Not in a program the process exec'd meanwhile. */
	if (!execd && ptrace(PTRACE_SETREGS, pid, 0, &saved) < 0 && rc == 0)
		rc = say(why, cap, -errno, "cannot restore the registers: %s", strerror(errno));
detach:
	ptrace(PTRACE_DETACH, pid, 0, 0);
	if (stopped != 0)
		*pause_ns = now_ns() - stopped;
	return rc;
}

#else

int inject_library(pid_t pid, const char *path, const struct inject_env *env, size_t nenv,
                   const char *entry, int *entry_ret, uint64_t *pause_ns, char *why, size_t cap)
{
	(void)pid, (void)path, (void)env, (void)nenv, (void)entry, (void)entry_ret;
	*pause_ns = 0;
	return say(why, cap, -ENOTSUP, "attach works on x86-64 only");
}

#endif
