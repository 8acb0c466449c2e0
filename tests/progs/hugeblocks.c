/*
 * hugeblocks.c - a program that allocates many blocks of 1 TiB each.
 *
 * Usage: hugeblocks N [SIZE], preloaded with the agent and libfakebig.so
 * after it (fakebig.c), which grants such sizes with addresses nothing
 * backs. It allocates N blocks of SIZE bytes (default HUGE) at one site
 * (booked) and says "ready";
 * on "next" it frees them all (booked) and says "ready" again; then it
 * exits 0. The blocks are never touched. No stdio (truth.h).
 */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/mman.h>

#include "truth.h"

#define HUGE ((size_t)1 << 40)

static void **blocks;
static long n;
static size_t size = HUGE;
static int rec = -1;

static void make_huge(void)
{
	for (long i = 0; i < n; i++) {
		blocks[i] = malloc(size); rec = TRUTH_ALLOC(size);
		if (blocks[i] == NULL)
			truth_die("hugeblocks: malloc failed: is libfakebig.so preloaded?");
	}
}

int main(int argc, char **argv)
{
	char cmd[64];

	n = argc > 1 ? atol(argv[1]) : 1000;
	if (argc > 2)
		size = (size_t)strtoull(argv[2], NULL, 10);
	/* Not malloc: the array is not one of the blocks the book describes. */
	blocks = mmap(NULL, (size_t)n * sizeof(*blocks), PROT_READ | PROT_WRITE,
	              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (blocks == MAP_FAILED)
		truth_die("hugeblocks: no memory");
	TRUTH_CALL(make_huge());
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") == 0) {
		for (long i = n - 1; i >= 0; i--) {
			free(blocks[i]);
			truth_adjust(rec, -(long long)size, -1);
		}
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	munmap(blocks, (size_t)n * sizeof(*blocks));
	truth_write();
	return 0;
}
