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
 * Build: cc -O2 -Iproto -o /tmp/frame_leak bench/attacks/frame_leak.c BUILD/.libs/libproto.a
 * Run (as the attacker, against a memtraced whose runtime directory it can
 * reach):
 *   setpriv --reuid=65534 --regid=65534 --clear-groups \
 *       /tmp/frame_leak RUNTIME_DIR [K=8192] [ROUNDS=4] [BASE=1]
 * Watch (root): grep VmRSS /proc/$(pidof memtraced)/status after each round,
 *   memtracectl status (limits.symbol_cache_bytes); this program prints
 *   nothing of the daemon: it has no rights to.
 */
#define _GNU_SOURCE
#include "attack.h"

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	uint32_t K = argc > 2 ? (uint32_t)atoi(argv[2]) : 8192;
	int rounds = argc > 3 ? atoi(argv[3]) : 4;
	uint64_t base = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	if (K == 0 || K > SHM_STACK_CAP || K > (uint64_t)SHM_NRINGS * (SHM_RING_CAP - 1))
		return 2;
	for (int round = 0; round < rounds; round++) {
		struct attack_region r;
		uint64_t fr[PROTO_MAX_FRAMES];
		uint64_t addr0 = (base + (uint64_t)round) << 36; /* fresh addresses each round */

		attack_region_new(&r);
		for (uint32_t id = 1; id <= K; id++) {
			for (uint32_t k = 0; k < PROTO_MAX_FRAMES; k++)
				fr[k] = addr0 + ((uint64_t)id * PROTO_MAX_FRAMES + k) * 16;
			attack_stack(&r, id, fr, PROTO_MAX_FRAMES);
			attack_event(&r, PROTO_EV_ALLOC, 0x10000 + (uint64_t)id * 64, 64, id);
		}
		attack_publish(&r);
		int fd = attack_hello(argv[1], "/bin/frame_leak", &r);
		munmap(r.map, SHM_SIZE);
		close(r.fd);
		usleep(300000);
		close(fd); /* the end: final drain, exit snapshot resolves every frame */
		printf("round %d: %u stacks x 256 new addresses\n", round, K);
		fflush(stdout);
		sleep(8);
	}
	return 0;
}
