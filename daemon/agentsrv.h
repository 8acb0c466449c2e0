/*
 * agentsrv.h - the agent socket: accepts traced processes and feeds their
 * frames into sessions.
 *
 * Owns the listening agent.sock and every agent connection. The peer's pid
 * and uid come from SO_PEERCRED at accept time. A malformed frame closes
 * that one connection with a logged reason; the session keeps what it had and
 * becomes "exited", and every other session goes on. Loop thread only.
 */
#ifndef MEMTRACE_AGENTSRV_H
#define MEMTRACE_AGENTSRV_H

#include "daemon.h"

/* Listens on d->agent_path (already free to bind). 0 or -errno. */
int agentsrv_start(struct daemon *d);
/* Closes the listener and every agent connection. */
void agentsrv_stop(struct daemon *d);
/* Removes exited sessions beyond the retention bound. */
void agentsrv_evict(struct daemon *d);

#endif
