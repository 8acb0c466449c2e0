/*
 * hostile.c - the attacks of bench/stall.sh that no traced program can make:
 * a hostile agent's module flood, control clients that never read, and
 * slow HTTP clients. A benchmark tool, not a test: it prints what it did
 * and exits 0 when it could do it.
 *
 * Usage:
 *   hostile modules RUNTIME_DIR N     an agent (HELLO with a good region)
 *                                     announcing N objects, highest first,
 *                                     then holding the connection 2 s
 *   hostile control RUNTIME_DIR C R   C control connections, each sending R
 *                                     `status` requests and reading nothing
 *                                     for 5 s
 *   hostile slowloris PORT A E S      E connections from each of 127.0.0.2
 *                                     .. 127.0.0.(A+1) to 127.0.0.1:PORT,
 *                                     each sending part of a request, held S
 *                                     seconds
 *   hostile final RUNTIME_DIR R       an agent whose first R rings are full
 *                                     (16,384 records each: allocations and
 *                                     frees in pairs), which says hello and
 *                                     closes at once: the daemon's final
 *                                     drain reads them all
 *   hostile wake RUNTIME_DIR S        an agent whose region always has a
 *                                     record in flight on all 1,024 rings
 *                                     (never readable), sending WAKE frames
 *                                     as fast as it can for S seconds
 *   hostile forks RUNTIME_DIR B F [W [S]]
 *                                     an agent with B live blocks (on S
 *                                     stacks of 32 frames, else none), then
 *                                     F FORK records no child claims (F may
 *                                     be 0: a large heap), each followed by
 *                                     W frees of blocks spread over the heap
 *                                     (the parent writes on after a fork),
 *                                     held 3 s
 *   hostile blocks RUNTIME_DIR B Q    an agent with B live blocks which,
 *                                     once the daemon holds them all, asks
 *                                     for them Q times over its own control
 *                                     connection (`traceback`, `top`,
 *                                     `snapshot`: each a capture with the
 *                                     largest blocks), then goes
 *   hostile query-drain RUNTIME_DIR S R Q T
 *                                     S agent connections sharing one region
 *                                     whose R rings a thread keeps full of
 *                                     frees of unknown blocks, and Q `list`
 *                                     requests pipelined on one control
 *                                     connection again and again for T
 *                                     seconds (each `list` reads every
 *                                     session); prints the slowest answer
 *   hostile memfd RUNTIME_DIR N M K   K times: N memfds of M MiB each (pages
 *                                     allocated) passed with SCM_RIGHTS on an
 *                                     agent connection, our references
 *                                     closed, so that the daemon's close is
 *                                     the last one and frees the pages
 *   hostile probe RUNTIME_DIR         not an attack: asks `status` every 5 ms
 *                                     on one connection until SIGTERM, then
 *                                     prints the longest answer time in ms
 *                                     (what a client waited for the loop; works
 *                                     with any memtraced, gauge or not)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "shm.h"

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

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			perror("send");
			exit(1);
		}
		c += w;
		n -= (size_t)w;
	}
}

static int region(void)
{
	int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)SHM_SIZE) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		return -1;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	((struct shm_header *)map)->magic = SHM_MAGIC;
	((struct shm_header *)map)->version = PROTO_VERSION;
	munmap(map, SHM_SIZE);
	return fd;
}

static double now_ms(void);

/* A region mapped for writing; its descriptor in *fd. */
static char *region_map(int *fd)
{
	*fd = region();
	if (*fd < 0)
		return NULL;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	return map == MAP_FAILED ? NULL : map;
}

static struct shm_ring *ring_at(char *map, uint32_t i)
{
	return (struct shm_ring *)(map + SHM_OFF_RING(i));
}

static void put_on(struct shm_ring *r, uint64_t seq, unsigned kind, uint64_t addr, uint32_t stack)
{
	uint64_t h = atomic_load(&r->head);
	r->ev[h % SHM_RING_CAP] = (struct shm_ev){seq << PROTO_EV_KIND_BITS | kind, addr,
	                                          kind == PROTO_EV_ALLOC ? 64 : 0, stack, 0};
	atomic_store(&r->head, h + 1);
}

static void put(struct shm_ring *r, uint64_t seq, unsigned kind, uint64_t addr)
{
	put_on(r, seq, kind, addr, 0);
}

/* Defines stacks 1 .. n in the region's table, 32 frames each. */
static int define_stacks(char *map, uint32_t n)
{
	uint64_t off = 0;
	size_t entry = sizeof(struct shm_stack) + 32 * sizeof(uint64_t);

	if (n > SHM_STACK_CAP || (uint64_t)n * entry > SHM_ARENA)
		return -1;
	for (uint32_t id = 1; id <= n; id++, off += entry) {
		struct shm_stack *st = (struct shm_stack *)(map + SHM_OFF_ARENA + off);
		uint64_t *frames = (uint64_t *)(st + 1);
		st->hash = id;
		st->nframes = 32;
		for (uint32_t k = 0; k < 32; k++)
			frames[k] = UINT64_C(0x400000) + (uint64_t)id * 0x1000 + k * 16;
		memcpy(map + SHM_OFF_OFFSETS + 8 * (uint64_t)id, &off, 8);
		map[SHM_OFF_STATES + id] = SHM_STACK_READY;
	}
	return 0;
}

/* Connects to agent.sock and says hello with region r. */
static int hello_with(const char *dir, int r)
{
	static const char exe[] = "/bin/hostile";
	uint8_t hello[1024];
	struct proto_hello h = {.version = PROTO_VERSION,
	                        .nframes = 32,
	                        .pid = (uint32_t)getpid(),
	                        .exe = exe,
	                        .exe_len = sizeof exe - 1,
	                        .cmdline = exe,
	                        .cmdline_len = sizeof exe};
	ssize_t hn = proto_hello_encode(hello, sizeof hello, &h);
	int fd = unix_connect(dir, "agent.sock");
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
	if (hn <= 0 || sendmsg(fd, &msg, MSG_NOSIGNAL) != hn) {
		perror("hello");
		exit(1);
	}
	return fd;
}

static int final_drain(const char *dir, uint32_t nrings)
{
	int r;
	char *map = region_map(&r);
	uint64_t seq = 1;

	if (map == NULL || nrings > SHM_NRINGS)
		return 1;
	/* Ring i holds pairs at addresses of its own, seq rising across
	 * rings in turn so that the merge interleaves them. */
	for (uint32_t k = 0; k < SHM_RING_CAP / 2; k++)
		for (uint32_t i = 0; i < nrings; i++) {
			uint64_t a = 0x10000000 + ((uint64_t)i * SHM_RING_CAP + k) * 64;
			put(ring_at(map, i), seq++, PROTO_EV_ALLOC, a);
			put(ring_at(map, i), seq++, PROTO_EV_FREE, a);
		}
	for (uint32_t i = 0; i < nrings; i++)
		atomic_store(&ring_at(map, i)->pending, UINT64_MAX);
	atomic_store(&((struct shm_header *)map)->nrings, nrings);
	atomic_store(&((struct shm_header *)map)->seq, seq);
	int fd = hello_with(dir, r);
	close(fd); /* the process is "gone": everything is for the final drain */
	printf("%" PRIu64 " records\n", seq - 1);
	return 0;
}

static int wake_flood(const char *dir, double seconds)
{
	int r;
	char *map = region_map(&r);
	uint8_t wakes[8 * 512];

	if (map == NULL)
		return 1;
	for (uint32_t i = 0; i < SHM_NRINGS; i++) {
		put(ring_at(map, i), 1 + i, PROTO_EV_ALLOC, 0x10000 + (uint64_t)i * 64);
		atomic_store(&ring_at(map, i)->pending, 1); /* record 1: in flight for ever */
	}
	atomic_store(&((struct shm_header *)map)->nrings, SHM_NRINGS);
	atomic_store(&((struct shm_header *)map)->seq, SHM_NRINGS + 10);
	for (size_t k = 0; k < sizeof wakes; k += 8)
		if (proto_empty_encode(wakes + k, 8, PROTO_WAKE) != 8)
			return 1;
	int fd = hello_with(dir, r);
	double end = now_ms() + seconds * 1000;
	long sent = 0;
	while (now_ms() < end) {
		send_all(fd, wakes, sizeof wakes);
		sent += (long)(sizeof wakes / 8);
	}
	close(fd);
	printf("%ld WAKE frames\n", sent);
	return 0;
}

/* Records written one ring after the other into a region. */
struct writer {
	char *map;
	uint64_t seq;
	uint32_t ring;
};

static int write_rec(struct writer *w, unsigned kind, uint64_t addr, uint32_t stack)
{
	if (atomic_load(&ring_at(w->map, w->ring)->head) == SHM_RING_CAP - 1 &&
	    ++w->ring == SHM_NRINGS)
		return -1;
	put_on(ring_at(w->map, w->ring), w->seq++, kind, addr, stack);
	return 0;
}

/* An agent whose region holds B allocations (on S stacks of 32 frames, or
 * none when S is 0), then F FORK records each followed by W frees spread
 * over the blocks; the connection's descriptor, or -1. */
static int heap_agent(const char *dir, uint32_t blocks, uint32_t forks, uint32_t frees,
                      uint32_t stacks)
{
	int r;
	struct writer w = {region_map(&r), 1, 0};
	uint64_t freed = 0;

	if (w.map == NULL || frees > blocks / (forks ? forks : 1) ||
	    define_stacks(w.map, stacks) < 0)
		return -1;
	for (uint32_t i = 0; i < blocks; i++)
		if (write_rec(&w, PROTO_EV_ALLOC, 0x10000000 + (uint64_t)i * 64,
		              stacks ? 1 + i % stacks : 0) < 0)
			return -1;
	/* The k-th free of all takes block k * stride (mod B), a different
	 * one each time: writes all over the table after each fork. */
	uint64_t total = (uint64_t)forks * frees, stride = total ? blocks / total : 0;
	for (uint32_t f = 0; f < forks; f++) {
		if (write_rec(&w, PROTO_EV_FORK, 0, 0) < 0)
			return -1;
		for (uint32_t k = 0; k < frees; k++, freed++)
			if (write_rec(&w, PROTO_EV_FREE, 0x10000000 + freed * stride * 64, 0) < 0)
				return -1;
	}
	for (uint32_t i = 0; i <= w.ring; i++)
		atomic_store(&ring_at(w.map, i)->pending, UINT64_MAX);
	atomic_store(&((struct shm_header *)w.map)->nrings, w.ring + 1);
	atomic_store(&((struct shm_header *)w.map)->seq, w.seq);
	int fd = hello_with(dir, r);
	uint8_t wake[8];
	if (proto_empty_encode(wake, sizeof wake, PROTO_WAKE) != 8)
		return -1;
	send_all(fd, wake, sizeof wake);
	return fd;
}

static int fork_flood(const char *dir, uint32_t blocks, uint32_t forks, uint32_t frees,
                      uint32_t stacks)
{
	int fd = heap_agent(dir, blocks, forks, frees, stacks);
	if (fd < 0)
		return 1;
	sleep(3);
	close(fd);
	printf("%u blocks, %u FORK records, %u frees after each\n", blocks, forks, frees);
	return 0;
}

/* Sends one request and reads its one-line answer into buf (cut at cap). */
static size_t ask(int fd, const char *req, char *buf, size_t cap)
{
	size_t len = 0;
	send_all(fd, req, strlen(req));
	for (;;) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("control answer");
			exit(1);
		}
		char *nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl != NULL || len == cap - 1) {
			/* An answer longer than buf: read on to its newline. */
			while (nl == NULL) {
				char more[4096];
				n = recv(fd, more, sizeof more, 0);
				if (n <= 0)
					exit(1);
				nl = memchr(more, '\n', (size_t)n);
			}
			buf[len] = '\0';
			return len;
		}
	}
}

static int blocks_queries(const char *dir, uint32_t blocks, int rounds)
{
	int fd = heap_agent(dir, blocks, 0, 0, 0);
	int c = unix_connect(dir, "control.sock");
	char req[128], ans[8192];
	const char *cmds[] = {"traceback", "top", "snapshot"};

	if (fd < 0)
		return 1;
	/* Until the daemon holds them all (its drain reads in slices). */
	snprintf(req, sizeof req, "{\"cmd\":\"stats\",\"pid\":%d}\n", (int)getpid());
	double end = now_ms() + 120000;
	for (;;) {
		ask(c, req, ans, sizeof ans);
		const char *b = strstr(ans, "\"blocks\":");
		if (b != NULL && strtoull(b + 9, NULL, 10) == blocks)
			break;
		if (now_ms() > end) {
			fprintf(stderr, "hostile: the daemon never held the %u blocks\n", blocks);
			return 1;
		}
		usleep(100000);
	}
	double worst = 0;
	for (int i = 0; i < rounds; i++) {
		snprintf(req, sizeof req, "{\"cmd\":\"%s\",\"pid\":%d}\n", cmds[i % 3],
		         (int)getpid());
		double t0 = now_ms();
		ask(c, req, ans, sizeof ans);
		if (now_ms() - t0 > worst)
			worst = now_ms() - t0;
		if (strstr(ans, "\"error\"") != NULL)
			fprintf(stderr, "hostile: %s: %.200s\n", cmds[i % 3], ans);
	}
	close(c);
	close(fd);
	printf("%u blocks, %d captures, the slowest answered in %.0f ms\n", blocks, rounds, worst);
	return 0;
}

/* ---- query-drain: S sessions on one region whose rings never empty ---- */

struct producer {
	char *map;
	uint32_t nrings;
	atomic_bool stop;
};

/* Keeps every ring full of FREE records of addresses never allocated. */
static void *produce(void *arg)
{
	struct producer *p = arg;
	struct shm_header *hd = (struct shm_header *)p->map;
	uint64_t seq = 1;

	while (!atomic_load(&p->stop)) {
		int wrote = 0;
		for (uint32_t i = 0; i < p->nrings; i++) {
			struct shm_ring *r = ring_at(p->map, i);
			uint64_t h = atomic_load(&r->head), t = atomic_load(&r->tail);
			for (; h - t < SHM_RING_CAP; h++, wrote++)
				r->ev[h % SHM_RING_CAP] = (struct shm_ev){
				    seq++ << PROTO_EV_KIND_BITS | PROTO_EV_FREE,
				    UINT64_C(0x7000000000) + (h % 4096) * 64, 0, 0, 0};
			atomic_store(&r->head, h);
		}
		atomic_store(&hd->seq, seq);
		if (!wrote)
			usleep(500);
	}
	return NULL;
}

static int query_drain(const char *dir, int sessions, uint32_t nrings, int queries, double seconds)
{
	struct producer p = {.nrings = nrings};
	pthread_t th;
	int r;

	p.map = region_map(&r);
	if (p.map == NULL || nrings > SHM_NRINGS || queries < 1 || queries > 64)
		return 1;
	for (uint32_t i = 0; i < nrings; i++)
		atomic_store(&ring_at(p.map, i)->pending, UINT64_MAX);
	atomic_store(&((struct shm_header *)p.map)->nrings, nrings);
	if (pthread_create(&th, NULL, produce, &p) != 0)
		return 1;
	usleep(200000);
	int *fds = calloc((size_t)sessions, sizeof(*fds));
	for (int i = 0; i < sessions; i++)
		fds[i] = hello_with(dir, r); /* kept open: live sessions, one region */
	usleep(500000);

	int c = unix_connect(dir, "control.sock");
	char req[64 * 16] = "", buf[1 << 16];
	for (int i = 0; i < queries; i++)
		strcat(req, "{\"cmd\":\"list\"}\n");
	double end = now_ms() + seconds * 1000, worst = 0;
	long rounds = 0;
	while (now_ms() < end) {
		double t0 = now_ms();
		send_all(c, req, strlen(req));
		for (int got = 0; got < queries;) {
			ssize_t n = recv(c, buf, sizeof buf, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				perror("list answer");
				return 1;
			}
			for (ssize_t k = 0; k < n; k++)
				got += buf[k] == '\n';
		}
		if (now_ms() - t0 > worst)
			worst = now_ms() - t0;
		rounds++;
	}
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	close(c);
	for (int i = 0; i < sessions; i++)
		close(fds[i]);
	free(fds);
	printf("%d sessions on one region of %u full rings: %ld x %d pipelined lists, the "
	       "slowest answered in %.0f ms\n",
	       sessions, nrings, rounds, queries, worst);
	return 0;
}

static int memfd_flood(const char *dir, int n, long mib, int rounds)
{
	if (n < 1 || n > 253)
		return 2;
	for (int round = 0; round < rounds; round++) {
		int fds[253];
		for (int i = 0; i < n; i++) {
			fds[i] = memfd_create("hostile-big", MFD_CLOEXEC);
			if (fds[i] < 0 || fallocate(fds[i], 0, 0, (off_t)mib << 20) < 0) {
				perror("memfd");
				return 1;
			}
		}
		int s = unix_connect(dir, "agent.sock");
		union {
			struct cmsghdr h;
			char space[CMSG_SPACE(253 * sizeof(int))];
		} ctl;
		char byte = 0;
		struct iovec iov = {&byte, 1};
		struct msghdr m = {.msg_iov = &iov,
		                   .msg_iovlen = 1,
		                   .msg_control = ctl.space,
		                   .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int))};
		memset(&ctl, 0, sizeof ctl);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
		if (sendmsg(s, &m, MSG_NOSIGNAL) != 1) {
			perror("sendmsg");
			return 1;
		}
		for (int i = 0; i < n; i++)
			close(fds[i]); /* the message holds the last references now */
		/* Until the daemon drops the connection (one byte is no frame). */
		char b;
		while (read(s, &b, 1) > 0)
			;
		close(s);
		sleep(1);
	}
	printf("%d x %d memfds of %ld MiB passed\n", rounds, n, mib);
	return 0;
}

static int modules(const char *dir, long n)
{
	static const uint8_t bid[20] = {1};
	int r = region();

	if (r < 0)
		return 1;
	int fd = hello_with(dir, r);
	size_t cap = (size_t)n * 256, len = 0;
	uint8_t *buf = malloc(cap);
	for (long i = n - 1; i >= 0; i--) {
		char path[160];
		int pl = snprintf(path, sizeof path,
		                  "/usr/lib/x86_64-linux-gnu/hostile/%0*ld/lib.so", 80, i);
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
	send_all(fd, buf, len);
	printf("hostile: sent %ld modules (%zu bytes)\n", n, len);
	sleep(2);
	close(fd);
	free(buf);
	return 0;
}

static int control(const char *dir, long conns, long reqs)
{
	static const char req[] = "{\"cmd\":\"status\"}\n";
	size_t len = (size_t)reqs * (sizeof req - 1);
	char *many = malloc(len);
	int *fd = calloc((size_t)conns, sizeof(*fd));
	long open = 0;

	for (long i = 0; i < reqs; i++)
		memcpy(many + (size_t)i * (sizeof req - 1), req, sizeof req - 1);
	for (long i = 0; i < conns; i++) {
		fd[i] = unix_connect(dir, "control.sock");
		fcntl(fd[i], F_SETFL, O_NONBLOCK);
	}
	/* Send as much as the daemon takes in 5 s; read nothing. */
	size_t *off = calloc((size_t)conns, sizeof(*off));
	time_t end = time(NULL) + 5;
	while (time(NULL) < end) {
		for (long i = 0; i < conns; i++) {
			if (off[i] >= len)
				continue;
			ssize_t w = send(fd[i], many + off[i], len - off[i], MSG_NOSIGNAL);
			if (w > 0)
				off[i] += (size_t)w;
		}
		usleep(10000);
	}
	size_t sent = 0;
	for (long i = 0; i < conns; i++) {
		sent += off[i];
		open += off[i] > 0;
		close(fd[i]);
	}
	printf("hostile: %ld control connections sent %zu bytes of requests, read nothing\n", open,
	       sent);
	free(off);
	free(fd);
	free(many);
	return 0;
}

static int slowloris(int port, int addrs, int each, int seconds)
{
	static const char part[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a";
	int n = addrs * each, ok = 0;
	int *fd = calloc((size_t)n, sizeof(*fd));

	for (int i = 0; i < n; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET};
		char src[32];
		snprintf(src, sizeof src, "127.0.0.%d", 2 + i / each);
		fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		inet_pton(AF_INET, src, &a.sin_addr);
		if (bind(fd[i], (struct sockaddr *)&a, sizeof a) < 0)
			continue;
		a.sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		if (connect(fd[i], (struct sockaddr *)&a, sizeof a) < 0)
			continue;
		(void)send(fd[i], part, sizeof part - 1, MSG_NOSIGNAL);
		ok++;
	}
	printf("hostile: %d slow HTTP connections from %d addresses\n", ok, addrs);
	sleep((unsigned)seconds);
	for (int i = 0; i < n; i++)
		close(fd[i]);
	free(fd);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int probe(const char *dir)
{
	static const char req[] = "{\"cmd\":\"status\"}\n";
	int fd = unix_connect(dir, "control.sock");
	double worst = 0;
	char buf[65536];

	signal(SIGTERM, on_term);
	while (!stop) {
		double t0 = now_ms();
		send_all(fd, req, sizeof req - 1);
		/* One answer: read up to its newline. */
		for (;;) {
			ssize_t n = recv(fd, buf, sizeof buf, 0);
			if (n < 0 && errno == EINTR && !stop)
				continue;
			if (n <= 0) {
				printf("%.1f\n", worst);
				return stop ? 0 : 1;
			}
			if (memchr(buf, '\n', (size_t)n) != NULL)
				break;
		}
		double took = now_ms() - t0;
		if (took > worst)
			worst = took;
		usleep(5000);
	}
	printf("%.1f\n", worst);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "probe") == 0)
		return probe(argv[2]);
	if (argc == 4 && strcmp(argv[1], "modules") == 0)
		return modules(argv[2], atol(argv[3]));
	if (argc == 4 && strcmp(argv[1], "final") == 0)
		return final_drain(argv[2], (uint32_t)atol(argv[3]));
	if (argc == 4 && strcmp(argv[1], "wake") == 0)
		return wake_flood(argv[2], atof(argv[3]));
	if (argc >= 5 && argc <= 7 && strcmp(argv[1], "forks") == 0)
		return fork_flood(argv[2], (uint32_t)atol(argv[3]), (uint32_t)atol(argv[4]),
		                  argc >= 6 ? (uint32_t)atol(argv[5]) : 0,
		                  argc == 7 ? (uint32_t)atol(argv[6]) : 0);
	if (argc == 5 && strcmp(argv[1], "blocks") == 0)
		return blocks_queries(argv[2], (uint32_t)atol(argv[3]), atoi(argv[4]));
	if (argc == 7 && strcmp(argv[1], "query-drain") == 0)
		return query_drain(argv[2], atoi(argv[3]), (uint32_t)atol(argv[4]), atoi(argv[5]),
		                   atof(argv[6]));
	if (argc == 6 && strcmp(argv[1], "memfd") == 0)
		return memfd_flood(argv[2], atoi(argv[3]), atol(argv[4]), atoi(argv[5]));
	if (argc == 5 && strcmp(argv[1], "control") == 0)
		return control(argv[2], atol(argv[3]), atol(argv[4]));
	if (argc == 6 && strcmp(argv[1], "slowloris") == 0)
		return slowloris(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	fprintf(stderr,
	        "usage: hostile modules RUNTIME_DIR N | final RUNTIME_DIR RINGS | "
	        "wake RUNTIME_DIR SECONDS | forks RUNTIME_DIR BLOCKS FORKS [FREES [STACKS]] | "
	        "blocks RUNTIME_DIR BLOCKS QUERIES | "
	        "query-drain RUNTIME_DIR SESSIONS RINGS QUERIES SECONDS | "
	        "memfd RUNTIME_DIR N MIB ROUNDS | "
	        "control RUNTIME_DIR CONNS REQS | "
	        "slowloris PORT ADDRS EACH SECONDS | probe RUNTIME_DIR\n");
	return 2;
}
