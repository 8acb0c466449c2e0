/*
 * sockowner.h - which local user owns the other end of a loopback TCP
 * connection.
 *
 * Every local user can connect from any of 127.0.0.0/8 (and ::1), so the
 * peer's address says nothing about who it is. The kernel knows: the
 * peer's socket is a local one, and sock_diag (NETLINK_SOCK_DIAG, the
 * interface of ss(8)) looks a socket up by its four-tuple and tells its
 * owner's uid, without privileges. The lookup is one request and one
 * answer on a netlink socket, which the kernel answers before the request
 * call returns, so it never waits.
 *
 * Where netlink is not allowed (a sandbox without AF_NETLINK) every lookup
 * fails and the caller treats loopback as one origin. Loop thread only;
 * the caller owns the struct.
 */
#ifndef MEMTRACE_SOCKOWNER_H
#define MEMTRACE_SOCKOWNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct sockowner {
	int fd;       /* the netlink socket, or -1 */
	uint32_t seq; /* of the last request */
};

/* Opens the netlink socket. 0 or -errno (then sockowner_uid always fails). */
int sockowner_open(struct sockowner *so);
void sockowner_close(struct sockowner *so);
/* Whether addr is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
bool sockowner_is_loopback(const struct sockaddr *addr);
/* The uid owning the socket at `peer` connected to our `local` (both
 * AF_INET or both AF_INET6). 0 with *uid set, or -errno (-ENOENT: no such
 * local socket, the peer is not on this host). */
int sockowner_uid(struct sockowner *so, const struct sockaddr *local, const struct sockaddr *peer,
                  uid_t *uid);

#endif
