/*
 * sender.h - the agent's one background thread and its daemon connection.
 *
 * The sender owns the socket to memtraced: HELLO (with the shared region's
 * descriptor), MODULE frames when objects are loaded or unloaded, and WAKE
 * when a ring fills past a quarter. Events are not its business: the daemon
 * reads them from the shared region (region.h), and goes on reading after
 * the process is gone, so the process's exit does not wait for the sender
 * and nothing depends on it surviving. It is the only writer on the socket,
 * so the hot path never touches it. It runs with the recursion guard held
 * for its whole life: nothing it does is traced.
 *
 * If the daemon cannot be reached at start, or goes away later, the agent
 * switches to AGENT_DISABLED, says so once on stderr, and wakes every thread
 * blocked on a full ring: the program goes on untraced.
 */
#ifndef MEMTRACE_AGENT_SENDER_H
#define MEMTRACE_AGENT_SENDER_H

/* Connects, sends HELLO and the module map, starts the thread. 0 or -errno.
 * Called once per session, with the recursion guard held: from the
 * constructor, from a hook whose ring filled before it, or in a fork child.
 * Events recorded before it (from the process's first allocator call on)
 * wait in the rings, which the daemon reads from HELLO on. */
int sender_start(void);
/* Connects and sends HELLO only (system calls alone: a fork child does it in
 * its fork handler, so it is listed, and claims its parent's heap, from its
 * start). sender_start then does the rest. 0 or -errno. */
int sender_hello(void);
/* What to call when memtraced asks the agent to detach (memtracectl
 * detach): fn stops the recording and returns 0, after which the sender ends
 * the session (sender.c, detach_session); nonzero when there was nothing to
 * stop. Set once, before the first session. */
void sender_on_detach(int (*fn)(void));
/* Whether a detach is ending the session (a new one must wait). */
int sender_detaching(void);
/* Asks the sender to run a cycle now (a ring is filling up). */
void sender_wake(void);
/* At a clean exit: a program that ends before the sender thread noticed that
 * memtraced closed the connection (refused the session) still says so. */
void sender_exit_check(void);
/* Fork child: forget the parent's connection and thread (nothing is sent). */
void sender_after_fork_child(void);
/* fork() prepare/parent hooks: keep the loader lock out of the child. */
void sender_fork_prepare(void);
void sender_fork_parent(void);

#endif
