/*
 * ingest.c - what the daemon's ingest path costs, alone on one core: the
 * records of a shared region (proto/shm.h) read by drain_run into a heap
 * model, as memtraced does for a traced process, with no program competing
 * for the CPU. Prints ns per record, records per second of CPU and the
 * daemon's bytes per live block (heap_memory / live blocks).
 *
 * A pattern keeps `live` blocks alive: each step allocates a block (at one of
 * `stacks` call stacks) and frees the oldest one, so every record after the
 * first `live` is a lookup of a random old block; `-r` makes a fraction of
 * the frees a free of the block just allocated (a temporary, as a request
 * loop makes them); with `-g GAP` (1 to 63, with -r) such a block is
 * freed only once GAP more of them were allocated in its ring (a request
 * frees its blocks after the next ones: in redis-server only 13 % of the
 * temporaries are freed before the next allocation); the last GAP of each
 * ring stay live at the end. Addresses are spread as an allocator's are (16-byte
 * aligned, increasing, reused once freed).
 *
 * Usage: ingest [-n RECORDS] [-l LIVE] [-s STACKS] [-t THREADS] [-r PERCENT] [-g GAP]
 * (threads = rings written in turn; records are merged across them).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drain.h"
#include "heap.h"
#include "testregion.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* The number after option argv[*i]: at least `min`. */
static unsigned long arg(char **argv, int *i, int argc, unsigned long min)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "ingest: %s needs a number\n", argv[*i]);
		exit(2);
	}
	char *end;
	const char *s = argv[++*i];
	unsigned long v = strtoul(s, &end, 10);
	if (*end != '\0' || *s == '\0' || *s == '-' || v < min) {
		fprintf(stderr, "ingest: %s needs a number of at least %lu\n", argv[*i - 1], min);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	unsigned long total = 20000000, live = 1000000, nstacks = 1000, threads = 1;
	unsigned long temp_pct = 0, gap = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0)
			total = arg(argv, &i, argc, 1);
		else if (strcmp(argv[i], "-l") == 0)
			live = arg(argv, &i, argc, 1);
		else if (strcmp(argv[i], "-s") == 0)
			nstacks = arg(argv, &i, argc, 1);
		else if (strcmp(argv[i], "-t") == 0)
			threads = arg(argv, &i, argc, 1);
		else if (strcmp(argv[i], "-r") == 0)
			temp_pct = arg(argv, &i, argc, 0);
		else if (strcmp(argv[i], "-g") == 0)
			gap = arg(argv, &i, argc, 0);
		else {
			fprintf(stderr, "usage: ingest [-n RECORDS] [-l LIVE] [-s STACKS] "
			                "[-t THREADS] [-r PERCENT_TEMPORARY] [-g GAP]\n");
			return 2;
		}
	}
	if (gap > 0 && temp_pct == 0) {
		fprintf(stderr, "ingest: -g spaces the frees of -r's blocks: give -r too\n");
		return 2;
	}
	if (threads > SHM_NRINGS || nstacks > SHM_STACK_CAP || temp_pct > 100 || gap > 63) {
		fprintf(stderr, "ingest: at most %u threads, %u stacks, 100 %%, a gap of 63\n",
		        SHM_NRINGS, SHM_STACK_CAP);
		return 2;
	}

	struct testregion R;
	if (testregion_create(&R, 1) < 0) {
		perror("ingest: memfd");
		return 1;
	}
	/* Rings handed out and empty, nothing in flight (as the agent's). */
	__atomic_store_n((uint32_t *)&testregion_header(&R)->nrings, (uint32_t)threads,
	                 __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < threads; i++)
		testregion_place(&R, i, 0);
	for (uint32_t id = 1; id <= nstacks; id++) {
		uint64_t frames[12];
		for (int f = 0; f < 12; f++)
			frames[f] = 0x400000 + (uint64_t)id * 64 + (uint64_t)f * 0x1000;
		if (testregion_stack(&R, id, frames, 12) < 0) {
			fprintf(stderr, "ingest: stack table full\n");
			return 1;
		}
	}
	struct drain dr;
	const char *why = NULL;
	if (drain_open(&dr, testregion_fd(&R), &why) < 0) {
		fprintf(stderr, "ingest: drain_open: %s\n", why);
		return 1;
	}
	struct heap h;
	heap_init(&h, 0, 0);

	/* The live blocks, oldest first (a ring of addresses), and the free
	 * addresses an allocator would hand out again. */
	uint64_t *held = calloc(live, sizeof(*held));
	uint64_t *spare = calloc(live + 1, sizeof(*spare));
	size_t nheld = 0, first = 0, nspare = 0;
	uint64_t next_addr = 0x10000000, seq = 1, applied = 0;
	double busy = 0;
	uint32_t ring = 0;
	/* Each ring's temporaries not freed yet (-g), oldest first. */
	uint64_t(*pend)[64] = calloc(threads, sizeof(*pend));
	size_t *npend = calloc(threads, sizeof(*npend));

	while (applied < total) {
		/* One batch: up to half of every ring, then one drain. */
		uint64_t batch = (uint64_t)threads * (SHM_RING_CAP / 2);
		for (uint64_t k = 0; k < batch; k += 2) {
			uint32_t ri = ring;
			struct shm_ring *r = testregion_ring(&R, ring);
			ring = (ring + 1) % (uint32_t)threads;
			uint64_t a = nspare > 0 ? spare[--nspare] : (next_addr += 48);
			uint32_t stack = (uint32_t)(1 + rng() % nstacks);
			struct shm_ev e =
			    testregion_record(seq++, PROTO_EV_ALLOC, a, 16 + rng() % 200, stack);
			testregion_put(r, &e);
			if (temp_pct > 0 && rng() % 100 < temp_pct) {
				if (gap > 0) {
					/* Freed once `gap` more of them were allocated in this
					 * ring: the oldest pending one goes now. */
					pend[ri][npend[ri]++] = a;
					if (npend[ri] <= gap) {
						k--; /* no FREE this step */
						continue;
					}
					a = pend[ri][0];
					memmove(pend[ri], pend[ri] + 1,
					        --npend[ri] * sizeof(pend[ri][0]));
				}
				e = testregion_record(seq++, PROTO_EV_FREE, a, 0, 0);
				spare[nspare++] = a;
			} else {
				held[(first + nheld) % live] = a;
				if (nheld < live) {
					nheld++;
					continue;
				}
				uint64_t old = held[first];
				first = (first + 1) % live;
				e = testregion_record(seq++, PROTO_EV_FREE, old, 0, 0);
				spare[nspare++] = old;
			}
			testregion_put(r, &e);
		}
		__atomic_store_n((uint64_t *)&testregion_header(&R)->seq, seq, __ATOMIC_RELEASE);
		double t0 = cpu_now();
		long n = drain_run(&dr, &h, false, &why);
		busy += cpu_now() - t0;
		if (n < 0) {
			fprintf(stderr, "ingest: drain: %s\n", why);
			return 1;
		}
		applied += (uint64_t)n;
		if (n == 0) {
			fprintf(stderr, "ingest: the drain took nothing\n");
			return 1;
		}
	}
	printf("ingest: %" PRIu64 " records over %lu ring(s), %lu live blocks, %lu stacks, "
	       "%lu%% freed %s\n",
	       applied, threads, live, nstacks, temp_pct,
	       gap > 0 ? "a few allocations later" : "at once");
	if (gap > 0)
		printf("ingest: each freed once %lu more of them were allocated in its ring (-g)\n",
		       gap);
	printf("ingest: %.1f ns per record, %.1f million records per second of CPU\n",
	       busy * 1e9 / (double)applied, (double)applied / busy / 1e6);
	printf("ingest: %zu live blocks, %.1f bytes of model per live block\n", h.count,
	       (double)heap_memory(&h) / (double)h.count);
	heap_close(&h);
	drain_close(&dr);
	testregion_destroy(&R);
	free(held);
	free(spare);
	free(pend);
	free(npend);
	return 0;
}
