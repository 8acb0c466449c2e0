/*
 * attack.h - what the reproducers here share: a forged agent's shared region
 * (proto/shm.h) filled by hand, the HELLO that hands it to memtraced, and a
 * connection to one of its sockets. Each helper exits the program with a
 * message when the system refuses it: a reproducer has nothing to recover.
 *
 * Header-only, so that each reproducer stays one cc command:
 *   cc -O2 -Iproto -o /tmp/X bench/attacks/X.c BUILD/.libs/libproto.a
 */
#ifndef MEMTRACE_BENCH_ATTACK_H
#define MEMTRACE_BENCH_ATTACK_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"
#include "shm.h"

static inline void attack_die(const char *what)
{
	perror(what);
	exit(1);
}

/* A connected stream socket to DIR/NAME. */
static inline int attack_connect(const char *dir, const char *name)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		attack_die("connect");
	return fd;
}

/* A region as the agent makes it, mapped, its header written. */
struct attack_region {
	int fd;
	char *map;
	uint64_t arena; /* bytes of the stack arena used */
	uint32_t ring;  /* the ring records go to */
	uint64_t seq;   /* the next record's number */
};

static inline void attack_region_new(struct attack_region *r)
{
	r->fd = memfd_create("attack", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (r->fd < 0 || ftruncate(r->fd, (off_t)SHM_SIZE) < 0 ||
	    fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		attack_die("memfd");
	r->map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (r->map == MAP_FAILED)
		attack_die("mmap");
	((struct shm_header *)r->map)->magic = SHM_MAGIC;
	((struct shm_header *)r->map)->version = PROTO_VERSION;
	r->arena = 0;
	r->ring = 0;
	r->seq = 1;
}

/* Stack `id` (1-based) of n frames, ready. */
static inline void attack_stack(struct attack_region *r, uint32_t id, const uint64_t *frames,
                                uint32_t n)
{
	struct shm_stack *e = (struct shm_stack *)(r->map + SHM_OFF_ARENA + r->arena);

	e->hash = id;
	e->nframes = n;
	memcpy(e + 1, frames, n * sizeof(uint64_t));
	((uint64_t *)(r->map + SHM_OFF_OFFSETS))[id] = r->arena;
	((uint8_t *)(r->map + SHM_OFF_STATES))[id] = SHM_STACK_READY;
	r->arena += sizeof(*e) + 8 * (uint64_t)n;
}

/* One record in the current ring, the next ring when it is full. */
static inline void attack_event(struct attack_region *r, unsigned kind, uint64_t addr,
                                uint64_t size, uint32_t stack)
{
	struct shm_ring *g = (struct shm_ring *)(r->map + SHM_OFF_RING(r->ring));
	uint64_t h = atomic_load(&g->head);

	if (h == SHM_RING_CAP - 1) {
		if (++r->ring >= SHM_NRINGS) {
			fprintf(stderr, "out of rings\n");
			exit(1);
		}
		g = (struct shm_ring *)(r->map + SHM_OFF_RING(r->ring));
		h = atomic_load(&g->head);
	}
	g->ev[h % SHM_RING_CAP] =
	    (struct shm_ev){r->seq++ << PROTO_EV_KIND_BITS | kind, addr, size, stack, 0};
	atomic_store(&g->head, h + 1);
}

/* Every record written is there to read: nothing in flight. */
static inline void attack_publish(struct attack_region *r)
{
	for (uint32_t i = 0; i <= r->ring; i++)
		atomic_store(&((struct shm_ring *)(r->map + SHM_OFF_RING(i)))->pending, UINT64_MAX);
	atomic_store(&((struct shm_header *)r->map)->nrings, r->ring + 1);
	atomic_store(&((struct shm_header *)r->map)->seq, r->seq);
}

/* Connects to DIR/agent.sock and says HELLO as `exe`, the region attached
 * (still mapped, still open: the caller may go on writing it). The
 * connection. */
static inline int attack_hello(const char *dir, const char *exe, struct attack_region *r)
{
	uint8_t hello[1024];
	struct proto_hello h = {.version = PROTO_VERSION,
	                        .nframes = 32,
	                        .pid = (uint32_t)getpid(),
	                        .exe = exe,
	                        .exe_len = (uint32_t)strlen(exe),
	                        .cmdline = exe,
	                        .cmdline_len = (uint32_t)strlen(exe) + 1};
	ssize_t n = proto_hello_encode(hello, sizeof hello, &h);
	int fd = attack_connect(dir, "agent.sock");
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {hello, (size_t)n};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctl.space,
	                     .msg_controllen = sizeof ctl.space};
	struct cmsghdr *c;

	if (n <= 0)
		attack_die("hello");
	memset(&ctl, 0, sizeof ctl);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &r->fd, sizeof(int));
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) != n)
		attack_die("hello");
	return fd;
}

/* Sends all of buf. */
static inline void attack_send(int fd, const void *buf, size_t len)
{
	for (size_t o = 0; o < len;) {
		ssize_t w = send(fd, (const char *)buf + o, len - o, MSG_NOSIGNAL);
		if (w <= 0)
			attack_die("send");
		o += (size_t)w;
	}
}

/* One scrape of /metrics on 127.0.0.1:port: the loop's worst stall so far
 * (memtrace_loop_stall_max_seconds), or -1. */
static inline double attack_metrics_stall(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	static char buf[1 << 22];
	static const char req[] = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
	size_t n = 0;
	ssize_t k;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		attack_die("connect metrics");
	attack_send(fd, req, sizeof req - 1);
	while (n < sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
		n += (size_t)k;
	buf[n] = '\0';
	close(fd);
	char *p = strstr(buf, "\nmemtrace_loop_stall_max_seconds ");
	return p != NULL ? strtod(p + 34, NULL) : -1;
}

#endif
