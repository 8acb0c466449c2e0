/*
 * sdnotify.h - the two systemd protocols memtraced speaks, written out by
 * hand (they are a few lines each, and libsystemd is not a dependency).
 *
 * Readiness (sd_notify(3)): a datagram of "KEY=VALUE" lines sent to the
 * AF_UNIX socket named by $NOTIFY_SOCKET, a path or, when it starts with
 * '@', an abstract-namespace name. Without $NOTIFY_SOCKET (not started by
 * systemd with Type=notify) nothing is sent. The variable is left in place:
 * the daemon speaks more than once (READY=1, STATUS=..., STOPPING=1).
 *
 * Socket activation (sd_listen_fds(3)): when $LISTEN_PID is this process,
 * $LISTEN_FDS sockets start at fd 3, and $LISTEN_FDNAMES names them
 * (socket units' FileDescriptorName=). sdnotify_listen_fds picks out the
 * agent and control sockets and unsets the three variables, whoever they
 * were for, so that no child inherits them.
 *
 * Stateless: every call reads the environment. Call from the loop thread
 * (the environment is not thread-safe); sends never block for long.
 */
#ifndef MEMTRACE_SDNOTIFY_H
#define MEMTRACE_SDNOTIFY_H

/* Sends `state`, e.g. "READY=1\nSTATUS=listening". 1 when sent, 0 when
 * $NOTIFY_SOCKET is unset, or -errno (-EINVAL for a malformed address). */
int sdnotify_send(const char *state);
/* printf-style sdnotify_send. */
int sdnotify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The sockets systemd passed. Sockets named "agent" and "control" are
 * taken by name; when no passed socket has either name, the first is the
 * agent socket and the second the control socket. Each must be a listening
 * AF_UNIX stream socket; it is made close-on-exec. Passed sockets neither
 * role wants are closed. *agent_fd and *control_fd are -1 when not passed.
 * Returns the number of sockets passed (0 when not socket-activated), or
 * -EINVAL for malformed variables, -EBADF for a descriptor that is not
 * open, -ENOTSOCK for one that is not a listening AF_UNIX stream socket, or
 * -EEXIST when two sockets claim the same name. */
int sdnotify_listen_fds(int *agent_fd, int *control_fd);

#endif
