/*
 * ctlwire.h - the framing of control.sock: one line of text per message.
 *
 * The control protocol (daemon/CONTROL.md) sends one JSON object per line,
 * terminated by '\n'. This module owns only that framing, on a blocking Unix
 * stream socket: connecting, writing a whole line, and reading exactly one
 * line. It knows nothing about JSON, never prints and keeps no state between
 * calls, so memtracectl and the end-to-end tests share it and any thread may
 * use it on its own descriptor. The daemon reads its side from libuv and only
 * takes the limits from here.
 *
 * A line is read without consuming a byte past its '\n' (the socket is peeked
 * first), so a peer that sends two messages back to back loses neither, even
 * though nothing is buffered here. Writes use MSG_NOSIGNAL: a peer that went
 * away is -EPIPE, not SIGPIPE. Everything returns 0 (or a descriptor) or a
 * negative errno; EINTR is retried.
 */
#ifndef MEMTRACE_CTLWIRE_H
#define MEMTRACE_CTLWIRE_H

#include <stddef.h>

/* The limits of CONTROL.md, excluding the '\n'. */
#define CTLWIRE_MAX_REQUEST  (1u << 16)  /* 64 KiB */
#define CTLWIRE_MAX_RESPONSE (64u << 20) /* 64 MiB */

/*
 * Connects a new close-on-exec stream socket to the Unix socket at `path`.
 * Returns the descriptor, the caller closes it; -ENAMETOOLONG if `path` does
 * not fit in sun_path, else the errno of socket(2) or connect(2).
 */
int ctlwire_connect(const char *path);

/*
 * Writes `line` and a '\n', all of it. `line` must not contain a '\n'
 * (-EINVAL: it would split the message in two) and is not kept. -EPIPE when
 * the peer has closed its end.
 */
int ctlwire_send(int fd, const char *line);

/*
 * Reads one line. On success *out is a new malloc'ed, NUL-terminated string
 * without the '\n'; the caller frees it. A line longer than `max` bytes is
 * -EMSGSIZE, a NUL byte inside it -EBADMSG (the line must be text, so the
 * string is all of it), end of stream before the '\n' (even with no byte at
 * all) -ECONNRESET, and -ENOMEM when the buffer cannot grow. On error *out is
 * NULL and the stream is no longer in step with the peer: close it.
 */
int ctlwire_recv(int fd, char **out, size_t max);

#endif
