/*
 * inject.h - making a running process load a library: ptrace on our own.
 *
 * `memtracectl attach` uses it to load the agent into a process that was
 * started without it. The steps, each bounded in time:
 *
 *  1. PTRACE_SEIZE the process's main thread and PTRACE_INTERRUPT it (the
 *     other threads run on). It is used only stopped in a system call or
 *     outside libc and the loader: a thread stopped inside malloc may hold
 *     the allocator's lock, and the calls below allocate. Otherwise it is
 *     let run a millisecond and stopped again, up to INJECT_TRIES times.
 *  2. Calls in the process, on that thread, below its stack pointer (past
 *     the red zone), with its registers saved: setenv(NAME, VALUE, 1) for
 *     each variable given, then dlopen(PATH, RTLD_NOW | RTLD_LOCAL), each
 *     returning to address 0, whose fault stops the thread again (the
 *     SIGSEGV is never delivered). The functions' addresses are this
 *     process's own libc's, moved to where the target mapped the same file
 *     (same device and inode), so both must use one libc.so.6.
 *     When an entry function is named, dlsym(handle, ENTRY) and a call of
 *     it follow (int ENTRY(void)): an agent that is loaded already is
 *     started again that way, its constructor having run long ago.
 *  3. The registers are put back (a system call that was interrupted is
 *     restarted by the kernel as after any signal) and the thread detached.
 *
 * x86-64 only. The thread is stopped for the whole of it: *pause_ns says
 * how long.
 */
#ifndef MEMTRACE_INJECT_H
#define MEMTRACE_INJECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define INJECT_TRIES 2000 /* stops looking for a safe point after about 2 s */

struct inject_env {
	const char *name, *value;
};

/* Loads `path` into process pid after setting the environment variables
 * env[0..nenv) in it, then, when entry is not NULL, calls the library's
 * function of that name and puts what it returned in *entry_ret. 0, or
 * -errno with a sentence in why (cap bytes): -ESRCH the process is gone,
 * -EPERM ptrace refused, -EBUSY no safe point, -ENOEXEC no shared libc,
 * -EIO dlopen failed in the process (why has its dlerror), -ENOENT no such
 * entry function, -ETIMEDOUT a call did not return, -ENOTSUP not x86-64. */
int inject_library(pid_t pid, const char *path, const struct inject_env *env, size_t nenv,
                   const char *entry, int *entry_ret, uint64_t *pause_ns, char *why, size_t cap);

#endif
