/*
 * stacks.c - a program holding one live block from each of N distinct call
 * stacks (default 100,000), so bench/snapshot_bench.sh can time a snapshot
 * of a process with that many stacks and watch the daemon's loop meanwhile.
 *
 * Block i is allocated at the one malloc in leaf(), reached through LEVELS
 * levels of recursion (LEVELS = the bits needed for N - 1, 17 for 100,000);
 * at each level level() calls itself from one of two call sites as bit i of
 * that level says, so every i has its own chain of return addresses: N
 * distinct stacks of LEVELS + about 5 frames, under MEMTRACE_NFRAMES'
 * default of 32 (a stack cut at 32 frames would lose the outer levels'
 * bits). The recursion must keep its frames and both call sites, hence O0
 * whatever CFLAGS say.
 *
 * Usage: stacks [-n N] [-s SIZE]
 * Prints "ready N" once every block is allocated, then waits until its
 * standard input ends and exits 0 without freeing anything. It writes with
 * write(2), so stdio allocates no buffer of its own.
 */
#pragma GCC optimize("O0")
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_STACKS (1u << 20)

static void **blocks;
static unsigned levels;
static size_t block_size = 32;

static void die(const char *what)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "stacks: %s\n", what);
	if (n > 0 && write(2, buf, (size_t)n) < 0)
		_exit(2);
	_exit(2);
}

static __attribute__((noinline)) void leaf(unsigned i)
{
	void *p = malloc(block_size);
	if (p == NULL)
		die("out of memory");
	memset(p, 0x33, block_size);
	blocks[i] = p;
}

/* One frame per level: the two calls are two call sites, so two return
 * addresses. */
static __attribute__((noinline)) void level(unsigned l, unsigned i)
{
	if (l == levels)
		leaf(i);
	else if ((i >> l) & 1u)
		level(l + 1, i);
	else
		level(l + 1, i);
}

int main(int argc, char **argv)
{
	unsigned long n = 100000;
	char buf[64];
	int opt, len;

	while ((opt = getopt(argc, argv, "n:s:")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoul(optarg, NULL, 10);
			break;
		case 's':
			block_size = strtoul(optarg, NULL, 10);
			break;
		default:
			die("usage: stacks [-n N] [-s SIZE]");
		}
	}
	if (n < 1 || n > MAX_STACKS || block_size < 1)
		die("N must be 1 .. 1048576, SIZE at least 1");
	while ((1ul << levels) < n)
		levels++;
	/* The block table is one more (large) block and stack. */
	blocks = calloc(n, sizeof *blocks);
	if (blocks == NULL)
		die("out of memory");
	for (unsigned i = 0; i < n; i++)
		level(0, i);

	len = snprintf(buf, sizeof buf, "ready %lu\n", n);
	if (write(1, buf, (size_t)len) != len)
		die("write");
	while (read(0, buf, sizeof buf) > 0)
		;
	return 0;
}
