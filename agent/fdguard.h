/*
 * fdguard.h - the agent's file descriptors, kept apart from the program's.
 *
 * The agent holds descriptors in the program's table: its socket to memtraced
 * and libunwind's memory-validation pipe (libunwind checks that an address is
 * readable by writing the byte there into a pipe of its own and reading it
 * back). A program may close every descriptor it has, as daemons do, and then
 * open files that get the same numbers: the agent would write into the
 * program's files and sockets, read from them or block on them. So the
 * agent's descriptors are registered here, and:
 *  - they live high, at or above 512 (half the soft RLIMIT_NOFILE when that is
 *    lower), where the numbers a program opens rarely reach;
 *  - they are not the program's to close: close, close_range and closefrom
 *    are interposed and leave them open, so a program that closes everything
 *    goes on being traced. close(N) of one of them fails with EBADF, which is
 *    what the program would get without the agent: N was never its own;
 *  - when the program puts a descriptor of its own on one of those numbers
 *    (dup2, dup3), tracing stops first, with one line on stderr, and then the
 *    call does what was asked;
 *  - pipe2 called inside the agent (the recursion guard held: that is
 *    libunwind, creating or re-creating its pipe) returns a pipe moved high
 *    and registered.
 * Raw system calls bypass all of this: for them the sender checks its socket
 * before each write (sender.c).
 *
 * The interposed functions run on any thread of the program, in signal
 * handlers too: they load atomics and call the real functions, nothing else.
 * Calls made inside the agent pass straight through (a close of a registered
 * descriptor also unregisters it). The real functions are found with
 * dlsym(RTLD_NEXT) by this module's constructor.
 */
#ifndef MEMTRACE_AGENT_FDGUARD_H
#define MEMTRACE_AGENT_FDGUARD_H

/* Moves fd to a high number (close-on-exec when cloexec) and returns it; fd
 * itself when it already is high or cannot be moved. */
int fdguard_high(int fd, int cloexec);
/* Registers fd as the agent's. */
void fdguard_own(int fd);
/* Unregisters fd (it is no longer the agent's, or the program took it). */
void fdguard_disown(int fd);
/* Unregisters fd and closes it: how the agent closes its own descriptors. */
void fdguard_close(int fd);

#endif
