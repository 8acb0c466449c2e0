/*
 * control.h - the control socket: JSON requests from memtracectl.
 *
 * Owns control.sock and its client connections. The protocol (one JSON object
 * per line each way) is documented in CONTROL.md. The client's uid comes from
 * SO_PEERCRED: a non-root client sees only its own uid's sessions. Requests on
 * one connection are answered in order, one at a time; a request that needs
 * symbolization runs that part on the libuv thread pool and answers when it
 * is done, while the loop goes on ingesting. A request that is not JSON, or is
 * too large, gets an error and its connection is closed; nothing else is
 * affected. Loop thread only.
 */
#ifndef MEMTRACE_CONTROL_H
#define MEMTRACE_CONTROL_H

#include "daemon.h"

#define CONTROL_MAX_REQUEST (1u << 20)
#define CONTROL_MAX_QUEUED  ((size_t)256 << 20) /* unread answer bytes per client */

int control_start(struct daemon *d);
void control_stop(struct daemon *d);

#endif
