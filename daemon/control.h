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
 * affected.
 *
 * Bounded per uid and in all (d->control_conns): a connection past
 * --max-control-connections[-per-uid] gets one error line and is closed.
 * A connection is not read from while its request is being answered or
 * while more than CONTROL_MAX_UNREAD bytes of its answers wait to be read,
 * so a client that never reads costs at most that plus one answer; one that
 * stalls --control-timeout (reads nothing, or sends half a request) is
 * closed. Loop thread only.
 */
#ifndef MEMTRACE_CONTROL_H
#define MEMTRACE_CONTROL_H

#include <stddef.h>
#include <sys/types.h>

#include "daemon.h"

/* A request's bytes: every command is a few hundred bytes; parsing 64 KiB
 * of JSON takes the loop a few ms at most. */
#define CONTROL_MAX_REQUEST (1u << 16)
/* Request bytes parsed in one loop turn (loopwatch counts the turns) over
 * all clients; the rest wait for the next turn (the first request of a turn
 * is always taken, whatever its size). */
#define CONTROL_TURN_BYTES ((size_t)256 << 10)
/* A client whose unread answers pass this many bytes is not read from (its
 * next requests wait) until it has read half of them. */
#define CONTROL_MAX_UNREAD ((size_t)1 << 20)
/* A client that reads nothing of its answers, or sends part of a request
 * and then nothing, for this long (--control-timeout) is disconnected. */
#define CONTROL_DEFAULT_STALL_MS          30000
#define CONTROL_BATCH                     16  /* requests of a client per loop turn */
#define CONTROL_DEFAULT_MAX_CONNS         256 /* connections in all */
#define CONTROL_DEFAULT_MAX_CONNS_PER_UID 16  /* ... of one uid */

int control_start(struct daemon *d);

/* The web interface (webui.c) runs requests as the control socket does, as
 * the uid its token was granted to, for the commands it may send (those
 * that read and change nothing, and "flame", its own). answer gets the
 * answer's text (one JSON object; "flame": an HTML page), which it takes,
 * exactly once: during the call (then the call returns NULL), or later
 * from the loop, unless control_call_cancel came first. */
typedef void (*control_answer_fn)(void *arg, char *text);
struct conn *control_call(struct daemon *d, uid_t uid, const char *line, size_t len,
                          control_answer_fn answer, void *arg);
/* The asker is gone: the answer is dropped. Only before answer was called. */
void control_call_cancel(struct conn *c);
void control_stop(struct daemon *d);

#endif
