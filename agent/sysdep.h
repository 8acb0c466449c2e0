/*
 * sysdep.h - the agent's OS layer: raw futexes, time, socket writes.
 *
 * Everything here is a thin wrapper over a system call. Nothing allocates,
 * takes a libc lock or touches errno-dependent stdio, so all of it is safe to
 * call from inside an interposed malloc, from the sender thread and from a
 * fork child before exec.
 */
#ifndef MEMTRACE_AGENT_SYSDEP_H
#define MEMTRACE_AGENT_SYSDEP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Sleeps while *word == expected, at most timeout_ns (0 = forever). */
void sysdep_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns);
void sysdep_futex_wake(_Atomic uint32_t *word, int nwake);
/* The same on a futex in memory shared with another process (the rings'
 * tail_futex, which memtraced wakes). */
void sysdep_futex_wait_shared(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns);
void sysdep_futex_wake_shared(_Atomic uint32_t *word, int nwake);
uint64_t sysdep_now_ns(void); /* CLOCK_MONOTONIC */
pid_t sysdep_gettid(void);
int sysdep_thread_alive(pid_t pid, pid_t tid); /* 1 alive, 0 gone */
/* Writes all of buf to a stream socket without SIGPIPE: 0 or -errno. */
int sysdep_send_all(int fd, const void *buf, size_t n);
/* Sends buf (one message's bytes) with descriptor `pass` attached
 * (SCM_RIGHTS), then whatever of buf the first send left: 0 or -errno. */
int sysdep_send_fd(int fd, const void *buf, size_t n, int pass);
/* Anonymous private mapping; NULL on failure. */
void *sysdep_map(size_t n, int noreserve);
void sysdep_unmap(void *p, size_t n);
/* One line on stderr with write(2): no stdio, no allocation. */
void sysdep_say(const char *a, const char *b, const char *c);
/* v in decimal, written at the end of buf; returns where the digits start. */
const char *sysdep_u64_str(char buf[24], uint64_t v);

#endif
