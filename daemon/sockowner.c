/* sockowner.c - the uid behind a loopback TCP connection (see sockowner.h). */
#include "sockowner.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

int sockowner_open(struct sockowner *so)
{
	so->seq = 0;
	so->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
	return so->fd < 0 ? -errno : 0;
}

void sockowner_close(struct sockowner *so)
{
	if (so->fd >= 0)
		close(so->fd);
	so->fd = -1;
}

bool sockowner_is_loopback(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

/* The address and port of a into the kernel's id fields (network order). */
static void put_end(const struct sockaddr *a, __be16 *port, __be32 addr[4])
{
	memset(addr, 0, 4 * sizeof(*addr));
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
		*port = v4->sin_port;
		addr[0] = v4->sin_addr.s_addr;
	} else {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
		*port = v6->sin6_port;
		memcpy(addr, &v6->sin6_addr, 16);
	}
}

int sockowner_uid(struct sockowner *so, const struct sockaddr *local, const struct sockaddr *peer,
                  uid_t *uid)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	union {
		struct nlmsghdr nlh;
		char buf[8192];
	} resp;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};

	if (so->fd < 0)
		return -ENOTCONN;
	if (local->sa_family != peer->sa_family ||
	    (peer->sa_family != AF_INET && peer->sa_family != AF_INET6))
		return -EAFNOSUPPORT;
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;
	req.nlh.nlmsg_seq = ++so->seq;
	req.r.sdiag_family = (__u8)peer->sa_family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	/* The peer's socket: its source is the peer, its destination us. */
	put_end(peer, &req.r.id.idiag_sport, req.r.id.idiag_src);
	put_end(local, &req.r.id.idiag_dport, req.r.id.idiag_dst);
	req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (sendto(so->fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	/* The kernel has answered by now; stale answers (of a lookup that
	 * failed half-way) are skipped by their sequence number. */
	for (int tries = 0; tries < 4; tries++) {
		ssize_t n = recv(so->fd, &resp, sizeof(resp), MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		for (struct nlmsghdr *h = &resp.nlh; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != so->seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				return e->error < 0 ? e->error : -EPROTO;
			}
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
			    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
				const struct inet_diag_msg *m = NLMSG_DATA(h);
				*uid = (uid_t)m->idiag_uid;
				return 0;
			}
		}
	}
	return -EPROTO;
}
