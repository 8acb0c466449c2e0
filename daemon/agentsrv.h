/*
 * agentsrv.h - the agent socket: accepts traced processes, feeds their
 * frames (and the descriptor HELLO brings) into sessions, and reads their
 * shared regions.
 *
 * Owns the listening agent.sock, every agent connection (read with recvmsg,
 * for the SCM_RIGHTS descriptor) and the timer that reads every live
 * session's region every 50 ms when it changed. The peer's pid and uid come
 * from SO_PEERCRED at accept time. When a connection closes - the process is
 * gone, whatever ended it, or it exec'd - the region is read one last time,
 * to the last record, before the session becomes "exited". A malformed frame
 * or a region that breaks a rule closes that one connection with a logged
 * reason; the session keeps what it had and becomes "exited", and every
 * other session goes on. Loop thread only.
 */
#ifndef MEMTRACE_AGENTSRV_H
#define MEMTRACE_AGENTSRV_H

#include "daemon.h"

/* Listens on d->agent_path (already free to bind). 0 or -errno. */
int agentsrv_start(struct daemon *d);
/* Closes the listener and every agent connection. */
void agentsrv_stop(struct daemon *d);
/* The drain timer's callback (exposed so that a session ending with records
 * left can bring it forward). */
void agentsrv_on_timer(uv_timer_t *t);
/* Removes exited sessions beyond the retention bound. */
void agentsrv_evict(struct daemon *d);

#endif
